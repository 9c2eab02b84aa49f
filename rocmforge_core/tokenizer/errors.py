"""The tokenizer's user-facing error."""

from rocmforge_core.errors import RocmforgeError


class TokenizerError(RocmforgeError):
    """Tokenizer metadata is missing, malformed or unsupported, or a call got invalid input."""
