"""Stubs generated from protos/inference.proto by server.grpc.codegen. Do not edit."""
