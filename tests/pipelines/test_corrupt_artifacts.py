"""Damaged run-directory files: an error that names the file and says what to do, or, for the latest
checkpoint, a fallback to the one before it (through the CLI, as a user meets them: training in a
subprocess, the error messages from `main` in this process)."""

import csv
import shutil

import pytest
from translator.pipelines.stages import Context, training_fingerprint

from translator.config import load_config
from translator.io import ArtifactError
from translator.rundir import RunDir
from translator.training.trainer import resume

from ..conftest import TINY
from .helpers import cli, run_main


def _copy(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    return run_dir


def _epochs(run_dir):
    with open(run_dir / "logs" / "metrics.csv", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_corrupt_files_are_named_in_the_error(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    for rel, content, says in (
        ("model.keras", b"PK\x03\x04 truncated", "not a readable Keras model"),
        ("tokenizers/src.model", b"\x00garbage", "not a readable sentencepiece tokenizer"),
        ("config.yaml", b"model: [unclosed", "config.yaml"),
    ):
        path = run_dir / rel
        good = path.read_bytes()
        path.write_bytes(content)
        r = run_main("translate", run_dir, "Das Haus.")
        assert r.returncode == 2, r.stderr
        assert str(path) in r.stderr and says in r.stderr and "Traceback" not in r.stderr
        assert "File not found" not in r.stderr
        path.write_bytes(good)
    marker = run_dir / "stages" / "tokenize.json"
    marker.write_text("{not json")
    r = run_main("run", TINY, "--run-dir", run_dir)
    assert r.returncode == 2 and str(marker) in r.stderr and "delete it" in r.stderr, r.stderr


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    run = RunDir(run_dir)
    assert run.previous_checkpoint.is_file() and run.previous_train_state.is_file()
    run.last_checkpoint.write_bytes(run.last_checkpoint.read_bytes()[:1000])  # truncated
    r = cli("train", TINY, "--run-dir", run_dir, "--set", "train.epochs=7")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stdout and "last.keras" in r.stdout and "resuming from" in r.stdout
    assert "after epoch 5" in r.stdout
    assert _epochs(run_dir) == [1, 2, 3, 4, 5, 6, 7]  # none missing, none twice


def test_a_damaged_state_file_falls_back_in_process(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    ctx = Context(load_config(TINY), run_dir, verbose=0)
    fp = training_fingerprint(ctx)
    state, _, path = resume(ctx.run, fp)
    assert state.epoch == 6 and path == ctx.run.last_checkpoint
    ctx.run.train_state.write_text("{")
    state, _, path = resume(ctx.run, fp)
    # previous.json (epoch 5) pairs with previous.keras by the optimizer's step count.
    assert state.epoch == 5 and path == ctx.run.previous_checkpoint
    # Nothing whole left: an error that says what to do, never a silent restart from epoch 1.
    ctx.run.previous_train_state.write_text("[]]")
    with pytest.raises(ArtifactError, match="--force"):
        resume(ctx.run, fp)


def test_force_trains_from_scratch_and_says_so(tiny_run, tmp_path):
    run_dir = _copy(tiny_run, tmp_path)
    r = run_main("train", TINY, "--run-dir", run_dir, "--force", "--set", "train.epochs=2")
    assert r.returncode == 0, r.stderr
    assert "training from scratch" in r.stdout and "resuming" not in r.stdout
    assert _epochs(run_dir) == [1, 2]
