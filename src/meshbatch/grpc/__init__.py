"""gRPC on the wire: length-prefixed messages, status codes, grpc-timeout, and the answers the proxy makes."""
