"""rocmforge format plugin for GGUF tensor type Q6_K (see plugin.py)."""
