"""Where requests are served: the first-party engine, and later hosted providers."""
