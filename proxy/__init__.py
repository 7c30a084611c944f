"""The proxy: HTTP and gRPC front door that routes writes to the head and spreads reads."""
