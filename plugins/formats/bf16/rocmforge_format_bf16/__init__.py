"""rocmforge format plugin for GGUF tensor type BF16 (see plugin.py)."""
