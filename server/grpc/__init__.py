"""The gRPC edge: Open Inference Protocol over native HTTP/2 or grpc.aio (``server.py``)."""
