"""
What a tunnel tells about itself: telemetry, Prometheus metrics, health
checks, the live status page, systemd notifications and the web plumbing
they share.
"""
