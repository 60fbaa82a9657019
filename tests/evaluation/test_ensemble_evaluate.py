"""`translator evaluate RUN_A+RUN_B`: an ensemble is one system (one row), compared by the paired
bootstrap and cached like a single run, under a key that covers every member's model."""

import json
import shutil
from pathlib import Path

from translator.pipelines.cli import main

from translator.evaluation import evaluate


def _copies(runs, tmp_path):
    """Copies of the two evaluation runs (their caches are this test's own)."""
    skip = shutil.ignore_patterns("cache")
    return [shutil.copytree(r, tmp_path / r.name, ignore=skip) for r in runs]


def test_an_ensemble_of_a_model_with_itself_scores_exactly_as_the_model(runs, tmp_path):
    base, _ = _copies(runs, tmp_path)
    test = {"test": base / "data" / "test.tsv"}
    single, ensemble = evaluate([base, [base, base]], test, bootstrap=50, cache=False)
    assert (ensemble.model, ensemble.run_dir) == ("base+base", f"{base}+{base}")
    assert ensemble.hypotheses == single.hypotheses
    assert ensemble.scores == single.scores
    assert ensemble.baseline == "base" and ensemble.significance["bleu"]["p_value"] is not None


def test_cli_ensemble_is_one_row_compared_and_cached(runs, tmp_path, capsys):
    base, noisy = _copies(runs, tmp_path)
    test = base / "data" / "test.tsv"
    argv = ["evaluate", str(base), f"{base}+{noisy}", "--test", f"test={test}"]
    argv += ["--bootstrap", "50", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["rows"]
    assert [r["model"] for r in rows] == ["base", "base+noisy"]
    first, pair = rows
    assert pair["run_dir"] == f"{base}+{noisy}" and pair["cached"] is False
    assert pair["baseline"] == "base" and pair["significance"]["bleu"]["p_value"] is not None
    assert "base+noisy" in capsys.readouterr().out
    # The ensemble's hypotheses are cached in its first run's cache, under their own key.
    assert (base / "eval" / "cache" / f"{pair['cache_key']}.txt").is_file()
    assert pair["cache_key"] != first["cache_key"]
    [again] = evaluate([[base, noisy]], {"test": test}, bootstrap=0)
    assert again.cached is True and again.cache_key == pair["cache_key"]
    written = Path(pair["files"]["hypotheses"]).read_text(encoding="utf-8")
    assert again.hypotheses == written.split("\n")[:-1]
    # Another member's model is another key: the cache never answers for a changed ensemble.
    [other] = evaluate([[base, base]], {"test": test}, bootstrap=0)
    assert other.cached is False and other.cache_key != pair["cache_key"]
    shutil.copyfile(base / "model.keras", noisy / "model.keras")
    [changed] = evaluate([[base, noisy]], {"test": test}, bootstrap=0)
    assert changed.cached is True and changed.cache_key == other.cache_key


def test_a_missing_member_is_a_clear_error_before_any_model_loads(runs, tmp_path, capsys):
    missing = tmp_path / "missing"
    out = tmp_path / "out"
    assert main(["evaluate", f"{runs[0]}+{missing}", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("translator: error:") and f"run directory not found: {missing}" in err
    assert not out.exists()
