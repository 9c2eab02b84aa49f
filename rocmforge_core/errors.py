"""User-facing errors: each carries one sentence that says what is wrong and what to do.

The CLI prints `str(error)` to stderr and exits non-zero; a traceback appears only with --debug.
"""


class RocmforgeError(Exception):
    """Base of every error the CLI reports as one clear sentence."""


class PluginError(RocmforgeError):
    """A plugin is missing, failed to import, or registered something invalid."""


class UnsupportedError(RocmforgeError):
    """No kernel or format can handle a concrete call; the message names the call and the reasons."""


class GGUFError(RocmforgeError):
    """A GGUF file is malformed, truncated, hostile, or uses something no plugin provides."""


class ProfileError(RocmforgeError):
    """A YAML profile is invalid; the message names file and line."""


class BackendError(RocmforgeError):
    """A backend failed: no device, out of memory, kernel failure."""


class OutOfMemoryError(BackendError):
    """An allocation did not fit; the message says what did not fit and what to do."""
