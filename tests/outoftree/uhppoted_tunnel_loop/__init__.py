"""The loop transport: tcp underneath, with a greeting of its own."""
