"""The embedded models and their one-time conversion into Hugging Face checkpoints."""
