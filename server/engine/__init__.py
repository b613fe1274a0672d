"""The transport-free core: sessions, batching, model lifecycle. Never imports an edge."""
