"""The zmq transport."""
