"""A tiny random llama with a tokenizer: a SentencePiece ("llama") vocabulary of byte tokens, letters, a few
words and ChatML's control tokens, and a ChatML chat template, so the server's whole path (template, encode,
model, streaming decode) runs on a model that loads in a moment."""

from __future__ import annotations

import string
from pathlib import Path

from rocmforge_core.models.synthetic import TinyConfig, write_model

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ["\u2581the", "\u2581hello", "\u2581world", "\u2581model", "\u2581token", "\u2581is", "\u2581an"]

CONTROL, USER_DEFINED = 3, 4  # GGUF token types


def vocabulary(added: tuple[tuple[str, int], ...] = ()) -> tuple[list[str], list[float], list[int]]:
    """The vocabulary, with ``added`` (text, token type) tokens after ChatML's."""
    pieces = ["\u2581"] + list(string.ascii_letters) + [f"\u2581{c}" for c in string.ascii_lowercase] + WORDS
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces, "<|im_start|>", "<|im_end|>",
              *(text for text, _ in added)]
    scores = [0.0] * 259 + [-float(len(p)) * 0.1 - i * 1e-3 for i, p in enumerate(pieces)] + [0.0] * (2 + len(added))
    scores = [-s for s in scores]  # longer pieces score higher
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces) + [3, 3] + [kind for _, kind in added]
    return tokens, scores, types


def write_chat_model(path: str | Path, config: TinyConfig, seed: int = 7, template: str = CHATML,
                     added: tuple[tuple[str, int], ...] = ()) -> dict:
    """The tiny chat model; ``template`` and ``added`` tokens (text, token type) for other model families'.
    Returns the tensors written (write_model's)."""
    import gguf

    tokens, scores, types = vocabulary(added)
    config.vocab_size = len(tokens)

    class WithTokenizer(gguf.GGUFWriter):  # write_model's writer, plus the tokenizer's metadata
        def write_header_to_file(self, *args, **kwargs):
            self.add_tokenizer_model("llama")
            self.add_token_list(tokens)
            self.add_token_scores(scores)
            self.add_token_types(types)
            self.add_bos_token_id(1)
            self.add_eos_token_id(2)
            self.add_chat_template(template)
            return super().write_header_to_file(*args, **kwargs)

    plain = gguf.GGUFWriter
    gguf.GGUFWriter = WithTokenizer
    try:
        return write_model(path, "llama", config, seed=seed)
    finally:
        gguf.GGUFWriter = plain
