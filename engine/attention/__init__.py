"""Switchyard's attention backends for vLLM (one file per backend)."""
