"""``switchyard bench serve``: load an OpenAI-compatible server or the engine's gRPC API
and report latency and throughput with the definitions ``vllm bench serve`` uses."""
