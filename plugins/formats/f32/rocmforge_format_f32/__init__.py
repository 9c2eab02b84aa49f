"""rocmforge format plugin for GGUF tensor type F32 (see plugin.py)."""
