"""The NATS transport: nats/client and natss/client ends on a NATS cluster."""
