"""The rules of one generating sequence (engine/sequence.py), without a model: what ends it, the text it emits,
its penalty history and the counter of its seeded draw."""

from __future__ import annotations

import pytest

from rocmforge_core.engine import SamplingParams
from rocmforge_core.engine.sequence import Sequence
from rocmforge_core.errors import RocmforgeError

GREEDY = SamplingParams(temperature=0)


class Letters:
    """A streaming decoder that holds back each odd token's text until the next one, as a UTF-8 decoder holds a
    partial character: token t reads as chr(ord('a') + t)."""

    def __init__(self):
        self.held = ""

    def add(self, token: int) -> str:
        self.held += chr(ord("a") + token)
        if len(self.held) < 2:
            return ""
        out, self.held = self.held, ""
        return out

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


def feed(seq: Sequence, tokens) -> list[bool]:
    return [seq.accept(t) for t in tokens]


def test_max_tokens_ends_it_and_flushes_the_decoder_tail():
    pieces = []
    seq = Sequence([1, 2], max_tokens=3, sampling=GREEDY, decoder=Letters(), on_text=pieces.append)
    assert feed(seq, [0, 1, 2]) == [False, False, True]
    assert seq.finish_reason == "length" and seq.ids == [0, 1, 2]
    assert pieces == ["ab", "c"] and seq.text == "abc"  # "c" was held by the decoder until the end


def test_end_of_generation_token_is_not_generated():
    seq = Sequence([1], max_tokens=8, sampling=GREEDY, eog_ids=[9], decoder=Letters())
    assert feed(seq, [0, 9]) == [False, True]
    assert seq.finish_reason == "eos" and seq.stop_token == 9 and seq.ids == [0] and seq.text == "a"
    assert seq.step == 1


def test_stop_string_across_tokens_is_never_emitted():
    pieces = []
    seq = Sequence([1], max_tokens=20, sampling=GREEDY, stop=["cde"], decoder=Letters(), on_text=pieces.append)
    # the decoder gives "ab", "cd" (held: it may begin "cde"), then "ef", which completes the stop string
    assert feed(seq, [0, 1, 2, 3, 4, 5]) == [False] * 5 + [True]
    assert seq.finish_reason == "stop" and pieces == ["ab"] and seq.text == "ab" and seq.ids == [0, 1, 2, 3, 4, 5]


def test_text_that_only_begins_a_stop_string_is_released():
    seq = Sequence([1], max_tokens=4, sampling=GREEDY, stop=["cx"], decoder=Letters())
    feed(seq, [0, 1, 2, 3])
    assert seq.finish_reason == "length" and seq.text == "abcd"


def test_context_limit():
    """5 prompt tokens in a context of 8: the tokens at positions 5, 6 and 7 are fed back, the 4th has no room."""
    seq = Sequence(range(5), max_tokens=10, sampling=GREEDY, n_ctx=8)
    positions = []
    while not seq.accept(1):
        positions.append(seq.position)
    assert positions == [5, 6, 7] and seq.finish_reason == "context" and len(seq.ids) == 4


def test_max_tokens_zero_is_finished_from_the_start():
    seq = Sequence([1, 2], max_tokens=0, sampling=GREEDY)
    assert seq.finished and seq.finish_reason == "length" and seq.ids == []
    with pytest.raises(RocmforgeError, match="already finished"):
        seq.accept(3)
    with pytest.raises(RocmforgeError, match="max_tokens must be >= 0"):
        Sequence([1], max_tokens=-1)


def test_penalty_history_and_seeded_draw_counter():
    params = SamplingParams(temperature=1.0, repeat_penalty=1.1, penalty_last_n=3, seed=5)
    seq = Sequence([1, 2, 3, 4], max_tokens=10, sampling=params)
    assert list(seq.history) == [2, 3, 4] and seq.penalized and seq.step == 0
    feed(seq, [7, 8])
    assert list(seq.history) == [4, 7, 8] and seq.step == 2 and seq.sampling.seed == 5
    plain = Sequence([1, 2, 3], max_tokens=10, sampling=SamplingParams(temperature=1.0))
    assert not plain.penalized and plain.sampling.seed is not None  # a random seed, made concrete


def test_without_a_decoder_stop_strings_never_match():
    seq = Sequence([1], max_tokens=3, sampling=GREEDY, stop=["a"])
    feed(seq, [0, 0, 0])
    assert seq.finish_reason == "length" and seq.text == ""


class ByteTokens:
    """Just what StreamDecoder reads of a tokenizer: token t stands for PIECES[t]."""

    class vocab:
        add_space_prefix = False

    PIECES = [b"a", b"\xe2\x82", b"\xac", b"\x80"]  # "\u20ac" (E2 82 AC) split over tokens 1 and 2; a stray byte

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        return self.PIECES[token]


@pytest.mark.parametrize("tokens", [[0, 1], [0, 1, 2], [0, 3, 1], [3, 1, 2, 1]])
def test_a_runners_end_gives_the_text_max_tokens_gives(tokens):
    """A server's time limit ends a sequence with ``end("time")`` after its last token; its text is the text of
    exactly those tokens, as max_tokens gives it: a character the cut split becomes one U+FFFD, never two, never
    a token's bytes more or less."""
    from rocmforge_core.tokenizer.stream import StreamDecoder

    cut = Sequence([1], max_tokens=100, sampling=GREEDY, decoder=StreamDecoder(ByteTokens()))
    assert feed(cut, tokens) == [False] * len(tokens)
    assert cut.end("time") and cut.finish_reason == "time" and cut.ids == tokens
    length = Sequence([1], max_tokens=len(tokens), sampling=GREEDY, decoder=StreamDecoder(ByteTokens()))
    assert feed(length, tokens)[-1] and length.finish_reason == "length"
    expected = b"".join(ByteTokens.PIECES[t] for t in tokens).decode("utf-8", "replace")
    assert cut.text == length.text == expected
    assert cut.text.count("\ufffd") == {(0, 1): 1, (0, 1, 2): 0, (0, 3, 1): 2, (3, 1, 2, 1): 2}[tuple(tokens)]
