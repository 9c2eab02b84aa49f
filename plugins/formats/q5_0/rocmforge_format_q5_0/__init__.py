"""rocmforge format plugin for GGUF tensor type Q5_0 (see plugin.py)."""
