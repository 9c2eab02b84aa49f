"""rocmforge format plugin for GGUF tensor type Q4_1 (see plugin.py)."""
