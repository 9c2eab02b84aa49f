"""rocmforge format plugin for GGUF tensor type Q4_K (see plugin.py)."""
