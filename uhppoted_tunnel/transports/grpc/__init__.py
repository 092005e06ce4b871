"""The grpc transport."""
