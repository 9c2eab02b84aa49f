"""rocmforge format plugin for GGUF tensor type Q4_0 (see plugin.py)."""
