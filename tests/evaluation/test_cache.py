"""`translator.evaluation.cache`: hypotheses are reused only for the same model, sources and settings."""

from pathlib import Path

from translator.evaluation import evaluate
from translator.evaluation.cache import cache_key, read_cache, write_cache
from translator.rundir import RunDir

from .conftest import BEAMS


def test_second_evaluation_reuses_cached_hypotheses(evaluated, runs):
    base, noisy = runs
    rows = evaluate(
        [base, noisy],
        [str(base / "data" / "test.tsv")],
        beam_sizes=BEAMS,
        bootstrap=1000,
        seed=12345,
    )
    stored = [r for r in evaluated["results"]["rows"] if r["test_set"] == "test"]
    assert len(rows) == len(stored) == 4
    for row, old in zip(rows, stored, strict=True):
        assert row.cached is True and old["cached"] is False
        assert (
            row.hypotheses
            == Path(old["files"]["hypotheses"]).read_text(encoding="utf-8").split("\n")[:-1]
        )
        assert row.sentences_per_s == old["sentences_per_s"]
        assert row.cache_key == old["cache_key"]
        assert (
            (base if row.model == "base" else noisy)
            .joinpath("eval", "cache", f"{row.cache_key}.txt")
            .is_file()
        )
        assert row.significance == old["significance"]
    # Another decoding setting is not in the cache.
    [changed] = evaluate(
        [base], {"test": base / "data" / "test.tsv"}, length_penalty=0.5, bootstrap=0
    )
    assert changed.cached is False and changed.cache_key not in {r.cache_key for r in rows}


def test_cache_round_trip(tmp_path):
    run = RunDir(tmp_path)
    decode = {"beam_size": 2, "length_penalty": 0.0}
    key = cache_key("model", ["a", "b"], decode)
    assert key != cache_key("model", ["a", "c"], decode) != cache_key("other", ["a", "b"], decode)
    assert read_cache(run, key, 2) is None
    write_cache(
        run,
        key,
        ["x\ny", ""],
        model_digest="model",
        test_data="t.tsv",
        decode=decode,
        seconds=1.23456,
        sentences_per_s=1.6,
    )
    hyps, meta = read_cache(run, key, 2)
    assert hyps == ["x y", ""] and (run.eval_cache / f"{key}.json").is_file()
    assert (meta["sentences"], meta["seconds"], meta["decode"]) == (2, 1.235, decode)
    assert read_cache(run, key, 3) is None
