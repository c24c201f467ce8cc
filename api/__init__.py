"""The engine's public API, all a caller of the engine needs: the gRPC stubs generated
from ``proto/`` (``switchyard.api.v1``) and the async client (``switchyard.api.client``).
Imports nothing else of ours, so the router and other clients install without the
engine."""
