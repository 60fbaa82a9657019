"""The run directory is trustworthy: one writer at a time, a config that matches its artifacts,
names that stay inside runs/ (through the CLI, as a user meets them: in a subprocess where a second
process is the point, else `main` in this process)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from translator.rundir import RunDir

from ..conftest import TINY
from .helpers import cli, run_main

HOLD = """
import sys, time
from translator.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock(run_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold_lock(run_dir)
    try:
        t0 = time.time()
        r = cli("prepare", TINY, "--run-dir", run_dir)
        assert r.returncode == 2, r.stderr
        assert str(run_dir) in r.stderr and f"PID {holder.pid}" in r.stderr
        assert "Traceback" not in r.stderr and time.time() - t0 < 60
        assert not (run_dir / "data").exists()  # nothing was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 released the lock: the next writer gets it.
    with RunDir(run_dir).lock():
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())


def test_config_is_written_only_with_the_artifacts_it_describes(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = (run_dir / "config.yaml").read_text()
    # A stage that is skipped, or runs on other sections, must not change what config.yaml says
    # about the tokenizers and the model.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "prepare", "--set", "tokenizer.type=word"
    )
    assert r.returncode == 0, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    r = run_main("translate", run_dir, "Das Haus ist alt.")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # A skipped stage (the model is up to date with the tokenizers it was trained on) and a stage
    # that fails write nothing either.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "train", "--set", "tokenizer.type=word"
    )
    assert r.returncode == 0 and "skipped" in r.stdout, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    missing = tmp_path / "missing.tsv"
    overrides = ["--set", "data.corpus=tsv", "--set", f"data.train={missing}"]
    r = run_main("run", TINY, "--run-dir", run_dir, "--stages", "prepare", *overrides)
    assert r.returncode == 2 and str(missing) in r.stderr, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    # A stage that runs records its own sections only.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "evaluate", "--set", "decode.beam_size=2"
    )
    assert r.returncode == 0, r.stderr
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["decode"]["beam_size"] == 2 and saved["tokenizer"]["type"] == "sentencepiece"


def test_config_names_cannot_leave_runs(tmp_path):
    for name in ("../../escape", "/tmp/escape", "a/../../b", "~/escape", ""):
        config = tmp_path / "c.yaml"
        config.write_text(TINY.read_text() + f"\nname: {name!r}\n")
        r = run_main("prepare", config, cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        assert "name" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    # An explicit --run-dir is the user's choice.
    r = run_main("prepare", TINY, "--run-dir", tmp_path / "elsewhere")
    assert r.returncode == 0, r.stderr


def _tree(run_dir):
    """Every file of a run directory with its bytes (the lock file aside)."""
    return {
        p.relative_to(run_dir): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_changed_settings_never_replace_a_trained_model_without_force(tiny_run, tmp_path):
    """A setting that would retrain from scratch (train, tokenizer or data, so also what the
    model was trained on) stops before anything is written, naming the change; settings that
    only continue the training, or do not touch it, go on; --force replaces."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = _tree(run_dir)
    for change, stage in (
        ("train.label_smoothing=0.3", "train"),
        ("model.decoder.dropout=0.5", "train"),
        ("tokenizer.tgt_vocab_size=64", "tokenize"),
        ("data.max_words=7", "prepare"),
    ):
        r = run_main("run", TINY, "--run-dir", run_dir, "--set", change)
        assert r.returncode == 2, (change, r.stdout, r.stderr)
        key, value = change.split("=")
        assert f"[{stage}] stopped: {run_dir} holds a trained model (model.keras)" in r.stderr
        assert f"{key}: " in r.stderr and f" -> {value}" in r.stderr and "--force" in r.stderr
        assert "Traceback" not in r.stderr
        assert _tree(run_dir) == before, change  # nothing written
    # The stage command alone, too.
    r = run_main("train", TINY, "--run-dir", run_dir, "--set", "train.learning_rate=0.5")
    assert r.returncode == 2 and "train.learning_rate: 0.01 -> 0.5" in r.stderr, r.stderr
    # Decoding settings re-evaluate the same model.
    r = run_main("run", TINY, "--run-dir", run_dir, "--set", "decode.beam_size=2")
    assert r.returncode == 0, r.stderr
    assert (run_dir / "model.keras").read_bytes() == before[Path("model.keras")]
    # --force replaces (and says so).
    r = run_main(
        "train", TINY, "--run-dir", run_dir, "--force", "--set", "train.label_smoothing=0.3",
        "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2",
    )  # fmt: skip
    assert r.returncode == 0 and "training from scratch" in r.stdout, r.stderr
    assert (run_dir / "model.keras").read_bytes() != before[Path("model.keras")]


def test_checkpoints_of_an_interrupted_training_with_other_settings_are_kept(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    (run_dir / "model.keras").unlink()  # killed before its first best model: checkpoints only
    (run_dir / "stages" / "train.json").unlink()
    last = (run_dir / "checkpoints" / "last.keras").read_bytes()
    r = run_main("train", TINY, "--run-dir", run_dir, "--set", "train.clip_norm=5")
    assert r.returncode == 2, r.stdout
    assert "holds a trained model (last.keras)" in r.stderr and "train.clip_norm" in r.stderr
    assert (run_dir / "checkpoints" / "last.keras").read_bytes() == last


def test_a_directory_that_is_not_a_run_is_never_written_over(tmp_path, monkeypatch):
    """`--run-dir .` in a project directory, or any non-empty directory this tool did not make:
    refused before anything is written (prepare would replace config.yaml and data/*.tsv)."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    pairs = "".join(f"Haus {i}\tHouse {i}\n" for i in range(300))
    (project / "data" / "train.tsv").write_text(pairs, encoding="utf-8")
    (project / "config.yaml").write_text("# my notes\n", encoding="utf-8")
    monkeypatch.chdir(project)
    corpus = ["--set", "data.corpus=tsv", "--set", "data.train=data/train.tsv"]
    r = run_main("run", TINY, "--run-dir", ".", "--stages", "prepare", *corpus)
    assert r.returncode == 2, r.stderr
    assert "is not empty and is not a run directory" in r.stderr and "Traceback" not in r.stderr
    assert (project / "data" / "train.tsv").read_text(encoding="utf-8") == pairs
    assert (project / "config.yaml").read_text(encoding="utf-8") == "# my notes\n"
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml", "data"]

    # In a run directory (after a first stage), the corpus still may not be one of its splits.
    run = tmp_path / "run"
    assert run_main("run", TINY, "--run-dir", run, "--stages", "prepare", *corpus).returncode == 0
    inside = ["--set", "data.corpus=tsv", "--set", f"data.train={run / 'data' / 'train.tsv'}"]
    before = (run / "data" / "train.tsv").read_text(encoding="utf-8")
    r = run_main("run", TINY, "--run-dir", run, "--stages", "prepare", "--force", *inside)
    assert r.returncode == 2, r.stderr
    assert "is the run directory's own data/train.tsv, which prepare writes" in r.stderr
    assert (run / "data" / "train.tsv").read_text(encoding="utf-8") == before
