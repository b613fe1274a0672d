"""The HTTP/REST edge: Open Inference Protocol (KServe V2) on Starlette."""
