"""rocmforge format plugin for GGUF tensor type MXFP4 (see plugin.py)."""
