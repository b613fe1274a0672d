"""The gRPC edge (Open Inference Protocol over grpc.aio): ``server.build_grpc_server``."""
