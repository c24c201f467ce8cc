"""The first-party engine: vLLM integration, model preparation and quantization, the gRPC
server. Its clients use the public API package, switchyard.api."""
