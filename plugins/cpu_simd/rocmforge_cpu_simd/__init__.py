"""rocmforge's CPU backend ("cpu"): numpy host tensors, numba kernels that work on quantized blocks directly."""
