"""F32 for the cpu backend: the rows as a float32 array viewing the file (no copy), layout "f32", which the cpu
backend's dense kernels (BLAS) take."""

import numpy as np


def repack(weight):
    return weight.with_data(np.asarray(weight.data).view(np.float32).reshape(weight.shape), "f32")
