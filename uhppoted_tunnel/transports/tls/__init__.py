"""The tls transport."""
