"""Small helpers that the engine, the router, the benchmarks and the CLI share: how a
validation error names its field, and how an engine process is started and stopped.
Depends on nothing of ours but the engine's public API (``switchyard.api``)."""
