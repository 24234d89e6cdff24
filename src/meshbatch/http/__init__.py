"""HTTP/1.1: the request reader, the server protocol, the upstream client and its pool."""
