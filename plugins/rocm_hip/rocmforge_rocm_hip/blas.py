"""Prefill products on the matrix units through the vendor BLAS: the weight is dequantized to an f16 copy (a
kernel of ours), the activations rounded to f16, and cuBLAS multiplies with f32 accumulation. Measured against our
own tiled kernel on the H100 (docs/PERF.md): the BLAS path is many times faster at prompt sizes.

Only HIP's NVIDIA platform has it so far (cuBLAS is found through cuda.pathfinder, from the nvidia-cublas wheel
or a CUDA toolkit); on AMD, and where no cuBLAS is found, prefill uses the tiled kernel.
"""

from __future__ import annotations

import ctypes

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUDA_R_16F, CUDA_R_32F = 2, 0
CUBLAS_COMPUTE_32F = 68
CUBLAS_GEMM_DEFAULT = -1


class Blas:
    def __init__(self, lib: ctypes.CDLL, stream: int) -> None:
        self.lib = lib
        self.handle = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        _check(lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream)), "cublasSetStream")
        self.alpha, self.beta = ctypes.c_float(1.0), ctypes.c_float(0.0)

    def gemm_f16(self, m: int, n: int, k: int, x16: int, w16: int, out: int) -> None:
        """out f32[m, n] = x16 f16[m, k] @ w16 f16[n, k].T (row-major, as cuBLAS's column-major out.T = w x.T)."""
        _check(self.lib.cublasGemmEx(
            self.handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, ctypes.byref(self.alpha),
            ctypes.c_void_p(w16), CUDA_R_16F, k, ctypes.c_void_p(x16), CUDA_R_16F, k, ctypes.byref(self.beta),
            ctypes.c_void_p(out), CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT), "cublasGemmEx")


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed with cuBLAS status {status}")


def open_blas(runtime) -> Blas | None:
    """cuBLAS bound to the runtime's stream, or None where there is none (AMD platform, no library)."""
    if runtime.platform != "nvidia":
        return None
    try:
        from cuda import pathfinder
        loaded = pathfinder.load_nvidia_dynamic_lib("cublas")
        lib = ctypes.CDLL(loaded.abs_path)
    except Exception:
        return None
    lib.cublasGemmEx.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return Blas(lib, int(runtime.stream))
