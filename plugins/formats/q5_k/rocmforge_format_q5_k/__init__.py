"""rocmforge format plugin for GGUF tensor type Q5_K (see plugin.py)."""
