"""Kernel benchmarks (``switchyard bench kernels ...``): ours against upstream kernels on a GPU."""
