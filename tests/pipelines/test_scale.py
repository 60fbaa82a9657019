"""Corpora larger than memory: prepare cuts splits from a stream, training reads the tokenize
stage's records (a run directory from before them still trains), and `translator bench-scale`."""

import json
import shutil

import pytest
from translator.pipelines.stages import Context, run_stage

from translator.config import load_config
from translator.data.corpus import bundled_path, clean, heldout_indices, read_tsv
from translator.data.records import open_train_examples, records_up_to_date
from translator.io import ArtifactError
from translator.rundir import RunDir

from ..conftest import TINY
from .helpers import cli


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_prepare_cuts_valid_and_test_from_the_stream_deterministically(tmp_path):
    pairs = read_tsv(bundled_path("train"))[:500]
    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("".join(f"{p.src}\t{p.tgt}\n" for p in pairs), encoding="utf-8")
    overrides = ["data.corpus=tsv", f"data.train={corpus}", "data.max_train_pairs=null"]
    overrides += ["data.max_valid_pairs=null", "data.max_test_pairs=null"]
    overrides += ["data.valid_fraction=0.1", "data.test_fraction=0.05"]
    runs = []
    for name, extra in (("a", []), ("b", []), ("limited", ["data.max_train_pairs=100"])):
        cfg = load_config(TINY, overrides=overrides + extra)
        summary = run_stage(Context(cfg, tmp_path / name, verbose=0), "prepare")
        assert summary["split"] == "made deterministically from train"
        runs.append(
            {s: _lines(RunDir(tmp_path / name).split(s)) for s in ("train", "valid", "test")}
        )
    a, b, limited = runs
    assert a == b  # deterministic
    cleaned = [f"{p.src}\t{p.tgt}" for p in clean(pairs, max_words=20)[0]]  # tiny: max_words 20
    valid_at, test_at = heldout_indices(len(cleaned), 0.1, 0.05, seed=1234)
    assert a["valid"] == [cleaned[i] for i in valid_at]
    assert a["test"] == [cleaned[i] for i in test_at]
    assert (len(a["valid"]), len(a["test"])) == (
        round(0.1 * len(cleaned)),
        round(0.05 * len(cleaned)),
    )
    held = set(valid_at) | set(test_at)
    assert a["train"] == [p for i, p in enumerate(cleaned) if i not in held]  # in corpus order
    assert not set(a["train"]) & set(a["valid"]) and not set(a["train"]) & set(a["test"])
    assert not set(a["valid"]) & set(a["test"])
    # data.max_train_pairs keeps the first training pairs; valid and test do not change.
    assert limited["train"] == a["train"][:100]
    assert (limited["valid"], limited["test"]) == (a["valid"], a["test"])


def test_a_run_directory_without_records_tokenizes_again_and_still_trains(tiny_run, tmp_path):
    run_dir = tmp_path / "old"
    shutil.copytree(tiny_run, run_dir)
    run = RunDir(run_dir)
    assert records_up_to_date(run, "sentencepiece")
    tokenizer = run.tokenizer_file("sentencepiece", "src").read_bytes()

    def forget_records():  # as a run directory written before the records existed
        for path in run.train_records.parent.glob("train*"):
            if path.suffix != ".tsv":
                path.unlink()

    forget_records()
    ctx = Context(load_config(TINY), run_dir, verbose=0)
    summary = run_stage(ctx, "tokenize")
    assert "skipped" not in summary and summary["train_shards"] == 1
    assert records_up_to_date(run, "sentencepiece")
    assert run.tokenizer_file("sentencepiece", "src").read_bytes() == tokenizer
    # `train` alone writes missing records with the run's own tokenizers, and resumes; a process
    # that only reads the run directory (a worker other than the chief) says what to run instead.
    forget_records()
    with pytest.raises(ArtifactError, match="run the tokenize stage"):
        open_train_examples(run, "sentencepiece", write_missing=False)
    ctx = Context(load_config(TINY, overrides=["train.epochs=7"]), run_dir, verbose=0)
    result = run_stage(ctx, "train")
    assert result["epochs"] == 7 and records_up_to_date(run, "sentencepiece")
    # A truncated shard (a disk that filled up) is written again like a missing one.
    shard = next(run.train_records.parent.glob("train-*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-50])
    assert not records_up_to_date(run, "sentencepiece")
    ctx = Context(load_config(TINY, overrides=["train.epochs=8"]), run_dir, verbose=0)
    result = run_stage(ctx, "train")
    assert result["epochs"] == 8 and records_up_to_date(run, "sentencepiece")


def test_bench_scale_prints_time_and_peak_memory_per_stage(tmp_path):
    out = tmp_path / "scale.json"
    r = cli(
        "bench-scale", TINY, "--train-steps", "3", "--run-root", tmp_path / "runs", "--json", out
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{TINY} (tiny, 400 training pairs; train: 3 steps)"
    assert lines[1].split() == ["stage", "seconds", "peak", "RSS", "MB"]
    assert [line.split()[0] for line in lines[2:6]] == ["prepare", "tokenize", "train", "all"]
    assert all(float(line.split()[2]) > 100 for line in lines[2:6])  # MB: TensorFlow alone
    assert lines[-1] == f"wrote {out}"
    results = json.loads(out.read_text())
    (tiny,) = results["configs"]
    assert [s["stage"] for s in tiny["stages"]] == ["prepare", "tokenize", "train"]
    assert tiny["peak_rss_mb"] == max(s["peak_rss_mb"] for s in tiny["stages"])
    assert tiny["peak_rss_ratio"] == 1.0 and tiny["train_steps"] == 3
    state = json.loads((tmp_path / "runs" / "1-tiny" / "checkpoints" / "state.json").read_text())
    assert state["history"][0]["steps"] == 3
    r = cli("bench-scale", tmp_path / "missing.yaml")
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "Traceback" not in r.stderr


def test_bench_scale_table_compares_peak_memory():
    from translator.scale_bench import format_table

    results = {
        "configs": [
            {"config": c, "name": c, "train_pairs": 9, "train_steps": 3, "seconds": 1.0,
             "peak_rss_mb": rss, "peak_rss_ratio": rss / 800,
             "stages": [{"stage": "train", "seconds": 1.0, "peak_rss_mb": rss}]}
            for c, rss in (("small", 800.0), ("large", 1000.0))
        ]
    }  # fmt: skip
    assert "peak RSS large / small: 1.25 (1000 MB / 800 MB)" in format_table(results)
