"""Routing decisions: named routers, their conditions and variants, fallback chains,
OpenRouter-style provider preferences and the health of what requests are sent to."""
