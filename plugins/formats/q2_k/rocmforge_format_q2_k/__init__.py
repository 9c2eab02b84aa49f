"""rocmforge format plugin for GGUF tensor type Q2_K (see plugin.py)."""
