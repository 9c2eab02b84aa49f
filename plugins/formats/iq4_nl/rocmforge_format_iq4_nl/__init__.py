"""rocmforge format plugin for GGUF tensor type IQ4_NL (see plugin.py)."""
