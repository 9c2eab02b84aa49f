"""GGUF loading: ``open_gguf(path)`` parses the header straight from a memory map (strings decoded lazily),
bound-checks everything against the file, and hands out tensor data as views. See docs/GGUF.md."""

from rocmforge_core.gguf.config import ModelConfig
from rocmforge_core.gguf.file import GGUFFile, TensorInfo, open_gguf
from rocmforge_core.gguf.ggml_types import GGML_TYPES, describe_type, plugin_for, type_name
from rocmforge_core.gguf.strings import StringArray

__all__ = ["GGML_TYPES", "GGUFFile", "ModelConfig", "StringArray", "TensorInfo", "describe_type", "open_gguf",
           "plugin_for", "type_name"]
