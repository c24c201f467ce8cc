"""The OpenAI-compatible router in front of the engine and third-party providers."""
