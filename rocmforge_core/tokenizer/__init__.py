"""Tokenizers built from GGUF ``tokenizer.*`` metadata, matching llama.cpp: SentencePiece-style "llama" (SPM),
byte-level "gpt2" BPE with llama.cpp's pre-tokenizers, and "gemma4" BPE; chat templates; streaming decode.
See docs/TOKENIZERS.md."""

from rocmforge_core.tokenizer.chat import TemplateError, render_chat
from rocmforge_core.tokenizer.errors import TokenizerError
from rocmforge_core.tokenizer.stream import StreamDecoder
from rocmforge_core.tokenizer.tokenizer import Tokenizer

from_metadata = Tokenizer.from_metadata
from_gguf = Tokenizer.from_gguf

__all__ = ["StreamDecoder", "TemplateError", "Tokenizer", "TokenizerError", "from_gguf", "from_metadata",
           "render_chat"]
