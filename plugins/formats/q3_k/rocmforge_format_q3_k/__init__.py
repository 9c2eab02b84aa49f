"""rocmforge format plugin for GGUF tensor type Q3_K (see plugin.py)."""
