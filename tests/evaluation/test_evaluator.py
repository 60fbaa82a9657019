"""`translator evaluate` / `translator.evaluation.evaluate`: runs, test sets, decoding, errors."""

import math
from pathlib import Path

import pytest
from translator.pipelines.cli import main

from translator.evaluation import evaluate

from ..conftest import TINY
from ..pipelines.helpers import cli, run_main


def test_empty_source_gives_an_empty_hypothesis_that_is_scored(evaluated, runs):
    text_rows = [r for r in evaluated["results"]["rows"] if r["test_set"] == "text"]
    for row in text_rows:
        hyps = Path(row["files"]["hypotheses"]).read_text(encoding="utf-8").split("\n")[:-1]
        assert hyps[0] == "" and row["sentences"] == 6
        assert all(math.isfinite(row["scores"][m]["score"]) for m in ("bleu", "chrf", "ter"))
    # The API with an in-memory test set and a (name, Translator) pair (no run dir: no cache).
    from translator.translate import Translator

    pairs = [("", "Nothing here."), ("Das Auto steht in der Garage.", "The car is in the garage.")]
    [row] = evaluate([("mem", Translator.load(runs[0]))], {"mine": pairs}, bootstrap=0)
    assert row.hypotheses[0] == "" and row.sentence_scores[0] == {"bleu": 0.0, "chrf": 0.0}
    assert row.model == "mem" and row.cached is False and row.cache_key is None
    assert math.isfinite(row.score("ter"))


def test_config_form_still_runs_the_evaluate_stage(runs, capsys):
    assert main(["evaluate", str(TINY), "--run-dir", str(runs[0])]) == 0
    assert "[evaluate] skipped: up to date" in capsys.readouterr().out
    # Options of the run-directory form are refused there, not silently ignored.
    stage = ["evaluate", str(TINY), "--run-dir", str(runs[0])]
    assert main([*stage, "--test", "x.tsv", "--worst", "3"]) == 2
    err = capsys.readouterr().err
    assert "--test, --worst: not options of the evaluate stage" in err, err
    # and the stage form's options in the run-directory form (--set was dropped without a word)
    assert main(["evaluate", str(runs[0]), "--set", "decode.beam_size=2", "--force"]) == 2
    err = capsys.readouterr().err
    assert "--set, --force: options of the evaluate stage" in err and "--beam-size" in err, err


def test_a_malformed_test_file_is_named_without_a_corpus_setting(runs, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("Das Haus.\tThe house.\nkein Tab\n", encoding="utf-8")
    assert main(["evaluate", str(runs[0]), "--test", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: expected exactly one tab" in err and "skip_malformed" not in err, err


def test_bad_arguments_fail_before_loading_a_model(tmp_path):
    with pytest.raises(ValueError, match="valid choices"):
        evaluate([tmp_path], metrics="bleu,nope")
    for bootstrap in (-1, 10**9, 2.5, True):
        with pytest.raises(ValueError, match="bootstrap resamples must be a whole number from 0"):
            evaluate([tmp_path], bootstrap=bootstrap)
    with pytest.raises(ValueError, match="seed must be a positive integer"):
        evaluate([tmp_path], seed=0)
    with pytest.raises(ValueError, match="no runs"):
        evaluate([])
    with pytest.raises(ValueError, match="expected a run directory"):
        evaluate([42])


def test_bad_input_is_a_clear_error(runs, tmp_path):
    base = runs[0]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    src, ref = tmp_path / "t.src", tmp_path / "t.ref"
    src.write_text("a\nb\nc\n", encoding="utf-8")
    ref.write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "nomodel").mkdir()
    cases = {
        "missing.tsv": [base, "--test", tmp_path / "missing.tsv"],
        f"{bad}:2": [base, "--test", f"bad={bad}"],
        f"{src} has 3 lines but {ref} has 2": [base, "--test", f"t={src},{ref}"],
        str(tmp_path / "nomodel" / "model.keras"): [tmp_path / "nomodel", "--test", bad],
    }
    # The first in a subprocess, as a shell sees it; the others from `main` in this process.
    (first, first_args), *others = cases.items()
    out = ["--output-dir", tmp_path / "o"]
    results = {first: cli("evaluate", *first_args, *out)}
    results.update({expected: run_main("evaluate", *args, *out) for expected, args in others})
    for expected, r in results.items():
        assert r.returncode == 2, r.stderr
        assert "translator: error:" in r.stderr and expected in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_output_dirs_that_would_overwrite_inputs_or_a_runs_own_files_are_refused(
    tiny_run, tmp_path
):
    """Before any decoding: a test file in --output-dir under an output's name, and the run
    directory or its eval/ (the evaluate stage's files) as --output-dir."""
    out = tmp_path / "ev"
    out.mkdir()
    hyp, ref = out / "x.hyp.txt", out / "ref.txt"
    hyp.write_text("Das Haus.\nDer Hund.\n", encoding="utf-8")
    ref.write_text("The house.\nThe dog.\n", encoding="utf-8")
    r = run_main("evaluate", tiny_run, "--test", f"x={hyp},{ref}", "--output-dir", out)
    assert r.returncode == 2 and "under a name the evaluation writes" in r.stderr, r.stderr
    assert hyp.read_text(encoding="utf-8") == "Das Haus.\nDer Hund.\n"
    eval_files = sorted(p.name for p in (tiny_run / "eval").iterdir())
    for inside in (tiny_run / "eval", tiny_run):
        r = run_main("evaluate", tiny_run, "--test", f"x={ref},{ref}", "--output-dir", inside)
        assert r.returncode == 2 and "which the run's evaluate stage owns" in r.stderr, r.stderr
    assert sorted(p.name for p in (tiny_run / "eval").iterdir()) == eval_files
