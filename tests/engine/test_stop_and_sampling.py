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
    for bad, message in [(dict(temperature=float("nan")), "temperature must be a finite number in [0, 2], got nan"),
                         (dict(temperature=float("inf")), "got inf"), (dict(temperature=-1), "got -1"),
                         (dict(temperature=1e9), "got 1000000000.0"), (dict(top_k=1.5), "top_k must be an integer"),
                         (dict(top_k=True), "got True"), (dict(seed=2 ** 64), "seed must be an integer in"),
                         (dict(presence_penalty=3), "presence_penalty must be a finite number in [-2, 2], got 3"),
                         (dict(penalty_last_n=[1] * 10_000), "got a list")]:
        with pytest.raises(SamplingError) as err:
            SamplingParams(**bad)
        assert message in str(err.value) and err.value.field == next(iter(bad))
    p = SamplingParams().with_seed()
    assert p.seed is not None and p.with_seed() is p
    assert "penalty_last_n" not in p.op_params()
