"""The first-party engine: vLLM integration, model preparation, gRPC server and client."""
