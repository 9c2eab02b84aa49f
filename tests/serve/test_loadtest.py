"""The load generator as scripts/serving-bench.sh uses it: a sweep over client counts against a URL, answers
compared with the one-client pass (or only measured), one JSON document out."""

from __future__ import annotations

import json

import pytest

from rocmforge_core.serve import loadtest
from rocmforge_core.serve.loadtest import Result, requests_for, sweep


def test_sweep_puts_a_one_client_pass_first_and_compares_with_it(server):
    report = sweep(server.url, requests_for(8, 4), [4, 2], compare=True)
    assert [run["clients"] for run in report["runs"]] == [1, 4, 2]
    for run in report["runs"]:
        assert run["mismatches"] == [] and run["short"] == 0
        assert run["tokens"] == 8 * 4 and run["tokens_per_s"] > 0
    assert report["requests"] == 8 and report["max_tokens"] == 4


def test_measure_only_runs_the_counts_given(server, capsys):
    assert loadtest.main(["--url", server.url, "--clients", "2", "--requests", "4", "--max-tokens", "3",
                          "--no-compare"]) == 0
    report = json.loads(capsys.readouterr().out)
    [run] = report["runs"]
    assert run["clients"] == 2 and run["tokens"] == 12 and "mismatches" not in run


def test_answers_that_differ_by_client_count_are_listed(monkeypatch, capsys):
    async def fake_load(url, bodies, clients, api_key=None, timeout=600.0):
        text = lambda i: "same" if i % 2 or clients == 1 else f"batched {clients}"  # noqa: E731
        return [Result(text(i), b["max_tokens"], 0.01, 0.1, "length") for i, b in enumerate(bodies)], 1.0

    monkeypatch.setattr(loadtest, "run_load", fake_load)
    assert loadtest.main(["--url", "http://unused", "--clients", "1,4", "--requests", "6", "--max-tokens", "2"]) == 1
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert runs[0]["mismatches"] == [] and runs[1]["mismatches"] == [0, 2, 4]


@pytest.mark.parametrize("args, message", [(["--clients", "0,4"], "positive counts"),
                                           (["--clients", "8", "--requests", "4"], "at least the largest")])
def test_bad_arguments_are_named(args, message, capsys):
    with pytest.raises(SystemExit):
        loadtest.main(["--url", "http://unused", *args])
    assert message in capsys.readouterr().err
