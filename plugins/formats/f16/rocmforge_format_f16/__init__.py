"""rocmforge format plugin for GGUF tensor type F16 (see plugin.py)."""
