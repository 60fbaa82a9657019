"""`translator.evaluation.significance`: sacrebleu's paired bootstrap, reproducibly seeded."""

import os
from pathlib import Path

import pytest

from translator.evaluation import paired_bootstrap

from .conftest import reference_lines


def test_bootstrap_is_sacrebleus_and_reproducible(evaluated):
    from sacrebleu.metrics import BLEU, CHRF, TER
    from sacrebleu.significance import PairedTest

    rows = [
        r
        for r in evaluated["results"]["rows"]
        if r["test_set"] == "test" and r["decode"]["beam_size"] == 1
    ]
    base, other = rows
    assert base["baseline"] == other["baseline"] == base["model"]
    assert base["significance"]["bleu"]["p_value"] is None
    assert 0 < other["significance"]["bleu"]["p_value"] <= 1
    assert "bs:1000|seed:12345" in other["significance"]["bleu"]["signature"]
    systems = [
        (r["model"], Path(r["files"]["hypotheses"]).read_text(encoding="utf-8").split("\n")[:-1])
        for r in rows
    ]
    refs = reference_lines(base)
    first = paired_bootstrap(systems, refs, n_samples=1000, seed=12345)
    again = paired_bootstrap(systems, refs, n_samples=1000, seed=12345)
    assert first == again
    for metric in ("bleu", "chrf", "ter"):
        for row, result in zip(rows, first[metric], strict=True):
            stored = row["significance"][metric]
            assert (stored["mean"], stored["ci"], stored["p_value"]) == (
                result["mean"],
                result["ci"],
                result["p_value"],
            )
    # The same numbers as sacrebleu's own manager class (what `sacrebleu --paired-bs` runs).
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = "12345"
    try:
        _, direct = PairedTest(
            systems, {"b": BLEU(), "c": CHRF(), "t": TER()}, [refs], "bs", 1000
        )()
    finally:
        if old is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = old
    assert [r.p_value for r in direct["BLEU"]] == [x["p_value"] for x in first["bleu"]]
    assert [r.ci for r in direct["chrF2"]] == pytest.approx([x["ci"] for x in first["chrf"]])


def test_bootstrap_arguments_are_checked():
    systems = [("a", ["x y z"]), ("b", ["x y"])]
    with pytest.raises(ValueError, match="at least two systems"):
        paired_bootstrap(systems[:1], ["x y z"])
    with pytest.raises(ValueError, match="seed must be a positive integer"):
        paired_bootstrap(systems, ["x y z"], seed=0)
    with pytest.raises(ValueError, match="a: 1 hypotheses but 2 references"):
        paired_bootstrap(systems, ["x y z", "w"])
    before = os.environ.get("SACREBLEU_SEED")
    result = paired_bootstrap(systems, ["x y z"], metrics=["chrf"], n_samples=10, seed=7)
    assert list(result) == ["chrf"] and result["chrf"][0]["p_value"] is None
    assert os.environ.get("SACREBLEU_SEED") == before
