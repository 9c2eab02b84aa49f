"""rocmforge format plugin for GGUF tensor type IQ4_XS (see plugin.py)."""
