"""The grpc/server and grpc/client connectors, and grpcs/ over TLS."""
from uhppoted_tunnel.core.declare import ConnectorPlugin, stream_kinds

grpc = ConnectorPlugin("grpc", "uhppoted_tunnel.transports.grpc.maker:GRPCConnectorMaker", stream_kinds("grpc"),
                       arguments=["grpc"], extra="grpc")
grpcs = ConnectorPlugin("grpcs", "uhppoted_tunnel.transports.grpc.maker:GRPCConnectorMaker", stream_kinds("grpcs"),
                        arguments=["grpcs"], extra="grpc", secure=stream_kinds("grpcs"))
