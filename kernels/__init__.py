"""Switchyard's kernels (Triton sources, torch references, launchers). Never imports vLLM."""
