"""rocmforge HIP backend: HIP kernels on AMD (hip-python) and NVIDIA (cuda-bindings + NVRTC) GPUs."""
