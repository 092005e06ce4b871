"""
The gRPC service of the C{grpc/} and C{grpcs/} ends: C{tunnel.proto}, and
C{tunnel_pb2}, which protoc made from it (see
C{tests/unit/test_grpclink.py} for how to make it again).
"""
