"""rocmforge format plugin for GGUF tensor type Q8_0 (see plugin.py)."""
