"""
The seam between relays and transports: the stream ends (server and
client), the byte-stream L{FramedProtocol}, connection caps, binding, and
the lifecycle every end shares.
"""
