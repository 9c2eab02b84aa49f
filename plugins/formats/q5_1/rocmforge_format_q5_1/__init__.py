"""rocmforge format plugin for GGUF tensor type Q5_1 (see plugin.py)."""
