"""Model quality measurements run through the serving engine (perplexity on held-out text)."""
