"""The grpc/server and grpc/client connectors, and grpcs/ over TLS."""
from uhppoted_tunnel.transports.grpc.maker import GRPCConnectorMaker

grpc = GRPCConnectorMaker("grpc")
grpcs = GRPCConnectorMaker("grpcs")
