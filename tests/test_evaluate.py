"""`translator evaluate` / `translator.evaluation.evaluate`: scores, significance, files, cache, errors.

Two models: the session's tiny run and a copy with slightly perturbed weights.
"""

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main
from translator.evaluation import evaluate, paired_bootstrap, parse_test_spec

from .conftest import TINY

PNG = b"\x89PNG\r\n\x1a\n"
BEAMS = (1, 2)


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    """(base, noisy): copies of the tiny run, the second with perturbed weights."""
    import keras
    import numpy as np

    import translator.models  # noqa: F401  (registers the custom layers for loading)

    root = tmp_path_factory.mktemp("eval-runs")
    ignore = shutil.ignore_patterns("checkpoints", "tensorboard", "cache")
    base = shutil.copytree(tiny_run, root / "base", ignore=ignore)
    noisy = shutil.copytree(base, root / "noisy")
    model = keras.saving.load_model(noisy / "model.keras", compile=False)
    rng = np.random.default_rng(0)
    for w in model.weights:
        v = w.numpy()
        w.assign(v + rng.normal(0.0, 0.05, v.shape).astype(v.dtype))
    model.save(noisy / "model.keras")
    return base, noisy


@pytest.fixture(scope="module")
def evaluated(runs, tmp_path_factory):
    """One CLI evaluation: 2 models x 2 test sets (TSV and aligned text with an empty source) x 2 beams."""
    base, noisy = runs
    tmp = tmp_path_factory.mktemp("eval-out")
    pairs = (base / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()[:12]
    src, ref = tmp / "text.src", tmp / "text.ref"
    src.write_text("\n".join([""] + [p.split("\t")[0] for p in pairs[:5]]) + "\n", encoding="utf-8")
    ref.write_text(
        "\n".join(["Nothing to translate."] + [p.split("\t")[1] for p in pairs[:5]]) + "\n",
        encoding="utf-8",
    )
    out = tmp / "out"
    argv = [
        "evaluate",
        base,
        noisy,
        "--test",
        base / "data" / "test.tsv",
        "--test",
        f"text={src},{ref}",
    ]
    argv += ["--beam-size", *BEAMS, "--worst", "2", "--output-dir", out]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in argv]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {"out": out, "stdout": stdout.getvalue(), "results": results, "runs": runs}


def _refs(row):
    from translator.data.corpus import read_text_pair, read_tsv

    spec = row["test_data"]
    pairs = read_text_pair(*spec.split(",")) if "," in spec else read_tsv(spec)
    return [p.tgt for p in pairs]


def test_scores_equal_sacrebleu_on_the_written_hypotheses(evaluated):
    import sacrebleu

    rows = evaluated["results"]["rows"]
    assert len(rows) == 2 * 2 * len(BEAMS)
    for row in rows:
        hyps = Path(row["files"]["hypotheses"]).read_text(encoding="utf-8").split("\n")[:-1]
        refs = _refs(row)
        bleu = sacrebleu.corpus_bleu(hyps, [refs])
        assert row["scores"]["bleu"]["score"] == pytest.approx(bleu.score)
        assert row["scores"]["chrf"]["score"] == pytest.approx(
            sacrebleu.corpus_chrf(hyps, [refs]).score
        )
        assert row["scores"]["ter"]["score"] == pytest.approx(
            sacrebleu.corpus_ter(hyps, [refs]).score
        )
        assert row["length_ratio"] == pytest.approx(bleu.sys_len / bleu.ref_len)
        assert "nrefs:1" in row["scores"]["bleu"]["signature"]
        with open(row["files"]["sentences"], encoding="utf-8", newline="") as f:
            sentences = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert sentences[0] == [
            "source",
            "reference",
            "hypothesis",
            "sentence_bleu",
            "sentence_chrf",
        ]
        assert [s[2] for s in sentences[1:]] == hyps and [s[1] for s in sentences[1:]] == refs
        for s in sentences[1:]:
            assert float(s[3]) == pytest.approx(
                sacrebleu.sentence_bleu(s[2], [s[1]]).score, abs=1e-4
            )
            assert float(s[4]) == pytest.approx(
                sacrebleu.sentence_chrf(s[2], [s[1]]).score, abs=1e-4
            )


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
    refs = _refs(base)
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


def _table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model  "))
    body = []
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("mean ±"):
            break
        body.append(re.split(r"\s{2,}", line.strip()))
    return body


def test_table_json_and_csv_agree(evaluated):
    table = _table_rows(evaluated["stdout"])
    rows = evaluated["results"]["rows"]
    with open(evaluated["out"] / "results.csv", encoding="utf-8", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(table) == len(rows) == len(csv_rows) == 8
    for cells, row, crow in zip(table, rows, csv_rows, strict=True):
        assert cells[:3] == [
            row["model"],
            row["test_set"],
            f"beam={row['decode']['beam_size']} lp=0",
        ]
        assert (crow["model"], crow["test_set"], int(crow["beam_size"])) == (
            row["model"],
            row["test_set"],
            row["decode"]["beam_size"],
        )
        for cell, metric in zip(cells[3:6], ("bleu", "chrf", "ter"), strict=True):
            score, sig = row["scores"][metric]["score"], row["significance"][metric]
            expected = f"{score:.2f} ({sig['mean']:.2f} ± {sig['ci']:.2f})"
            if sig["p_value"] is not None:
                expected += f" p={sig['p_value']:.4f}" + ("*" if sig["p_value"] < 0.05 else "")
            assert cell == expected
            assert float(crow[metric]) == pytest.approx(score)
            assert crow[f"{metric}_signature"] == row["scores"][metric]["signature"]
            assert float(crow[f"{metric}_ci"]) == pytest.approx(sig["ci"])
            assert crow[f"{metric}_p_value"] == (
                "" if sig["p_value"] is None else str(sig["p_value"])
            )
        assert cells[6] == f"{row['length_ratio']:.3f}" and float(
            crow["length_ratio"]
        ) == pytest.approx(row["length_ratio"])
        assert cells[7] == f"{row['sentences_per_s']:.1f}"
    # Legacy per-row files: `<stem>.scores.json` and `.hyp.txt`.
    assert (evaluated["out"] / "base.test.beam1.scores.json").is_file()
    assert (evaluated["out"] / "noisy.text.beam2.hyp.txt").is_file()


def test_worst_prints_k_sentences_per_row(evaluated):
    blocks = [b for b in evaluated["stdout"].split("\n\n") if b.startswith("worst ")]
    assert len(blocks) == 8
    for block in blocks:
        assert len(re.findall(r"^  #\d+  BLEU ", block, flags=re.M)) == 2
        assert block.count("      hyp: ") == 2


def test_plots_are_valid_pngs(evaluated, runs, tmp_path, capsys):
    pngs = sorted(evaluated["out"].glob("*.bleu-by-length.png"))
    assert [p.name for p in pngs] == [
        f"{t}.beam{b}.bleu-by-length.png" for t in ("test", "text") for b in BEAMS
    ]
    assert all(p.read_bytes()[:8] == PNG for p in pngs)
    assert main(["plot", str(runs[0]), str(runs[1]), "--output", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    assert main(["plot", str(runs[0]), str(tmp_path), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "logs" / "metrics.csv") in err and not (tmp_path / "x.png").exists()


def test_plot_command_does_not_load_tensorflow(runs, tmp_path):
    """`translator plot` only reads CSV logs, so it starts without TensorFlow."""
    out = tmp_path / "curves.png"
    code = (
        "import sys; from pipelines.cli import main; "
        f"rc = main(['plot', {str(runs[0])!r}, '--output', {str(out)!r}]); "
        "assert rc == 0; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert out.read_bytes()[:8] == PNG


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


def test_test_specs():
    assert parse_test_spec("news=a/b.tsv") == ("news", "a/b.tsv")
    assert parse_test_spec("news=a.de,a.en") == ("news", "a.de,a.en")
    assert parse_test_spec("dir/mine.tsv.gz") == ("mine", "dir/mine.tsv.gz")
    with pytest.raises(ValueError, match="NAME=FILE"):
        parse_test_spec("=x.tsv")


def test_config_form_still_runs_the_evaluate_stage(runs, capsys):
    assert main(["evaluate", str(TINY), "--run-dir", str(runs[0])]) == 0
    assert "[evaluate] skipped: up to date" in capsys.readouterr().out


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
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {
        expected: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.cli",
                "evaluate",
                *map(str, args),
                "--output-dir",
                tmp_path / "o",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for expected, args in cases.items()
    }
    for expected, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert "translator: error:" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
