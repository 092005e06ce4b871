"""
The ends that face UHPPOTE applications and controllers: UDP, the HTTP
request API and the IP (controller TCP) out end.
"""
