"""The cpu backend's kernels, one module per op (or family of small ops); each module's ``kernels()`` lists them."""
