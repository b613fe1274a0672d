"""TLS contexts, bearer tokens and scopes, shared by the HTTP and gRPC edges (stdlib only)."""
