import pytest

from rocmforge_core.engine.sampling import SamplingError, SamplingParams
from rocmforge_core.engine.stop import StopStrings


def feed_all(stops, pieces):
    s = StopStrings(stops)
    out = [s.feed(p) for p in pieces]
    return "".join(out) + s.flush(), s.stopped


def test_stop_string_split_across_pieces_is_not_emitted():
    assert feed_all(["###"], ["Hello #", "#", "# world"]) == ("Hello ", True)


def test_partial_match_is_released_when_it_does_not_complete():
    s = StopStrings(["</end>"])
    assert s.feed("a </e") == "a "
    assert s.feed("nd") == ""
    assert s.feed("x") == "</endx"
    assert not s.stopped


def test_earliest_stop_wins_and_text_at_the_end_is_flushed():
    assert feed_all(["b", "abc"], ["xxab", "c"]) == ("xxa", True)
    assert feed_all(["zz"], ["ab", "z"]) == ("abz", False)
    assert feed_all([], ["ab"]) == ("ab", False)


def test_sampling_params_are_validated():
    with pytest.raises(SamplingError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(SamplingError, match="top_k"):
        SamplingParams(top_k=-1)
    assert SamplingParams(temperature=0).greedy
    p = SamplingParams().with_seed()
    assert p.seed is not None and p.with_seed() is p
    assert "penalty_last_n" not in p.op_params()
