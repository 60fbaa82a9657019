"""Training killed (SIGKILL) at chosen kinds of moments, with seeded random delays, then rerun:
every rerun resumes, and the run ends with a loadable model and a metrics.csv without duplicated or
missing epochs."""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np

import translator.models  # noqa: F401  (registers the custom classes)

from ..conftest import TINY

EPOCHS = 4
STEPS = 5  # per epoch (of 20): short epochs, the same writes at their ends
# One rerun per entry, killed at a moment found by watching the run directory and the process's
# output (not by the clock alone, so that each kind of moment is hit on a slow machine as on a fast
# one), after a seeded random delay where the kind allows one:
#   log         the end-of-epoch writes are under way in logs/ (`metrics.csv`, the learning
#               curve): a temporary file is there, the epoch's checkpoint is whole;
#   checkpoint  the end-of-epoch writes are under way in checkpoints/: a temporary file is there,
#               `last.keras` and `state.json` are moved to `previous.*` and the new pair is not
#               yet whole;
#   start-up    the process holds the run directory's lock and is reading the data, the
#               tokenizers and the checkpoint it resumes from, or building the model (Keras has
#               not begun an epoch);
#   epoch       the process has finished an epoch (and its checkpoint) and is training the next.
KILLS = ("log", "start-up", "epoch", "checkpoint")
TIMEOUT = 300  # seconds a rerun may take to reach its moment


def _epochs(run_dir):
    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _temporary_files(run_dir, *dirs):
    return [
        name
        for d in dirs
        if (run_dir / d).is_dir()
        for name in os.listdir(run_dir / d)
        if name.startswith(".") and ".tmp" in name
    ]


def _train(run_dir, log):
    """`translator train` with its stdout and stderr in files (read while it runs)."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "translator.pipelines.cli", "train", str(TINY)]
            + ["--run-dir", str(run_dir), "--set", f"train.epochs={EPOCHS}"]
            + ["--set", f"train.steps_per_epoch={STEPS}"]
            # no early stopping: a killed epoch is redone from its checkpoint, so the scores (and
            # when patience runs out) depend on where the kills fell
            + ["--set", f"train.patience={EPOCHS}"],
            stdout=out,
            stderr=err,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )


def _output(log):
    return log.with_suffix(".out").read_text() + log.with_suffix(".err").read_text()


def _wait_for(proc, log, reached, interval=0.002):
    """Poll `reached()` until it is true; the process must still be running."""
    deadline = time.monotonic() + TIMEOUT
    while not reached():
        assert proc.poll() is None, f"the rerun ended before its kill:\n{_output(log)}"
        assert time.monotonic() < deadline, f"no kill moment within {TIMEOUT} s:\n{_output(log)}"
        time.sleep(interval)


def _lines(log, start):
    """How many lines of the process's stdout so far begin with `start`."""
    return ("\n" + log.with_suffix(".out").read_text()).count("\n" + start)


def _reach(kind, proc, run_dir, log, rng):
    """Wait until the process is at a moment of `kind` (see KILLS)."""
    # Keras prints `Epoch N/M` as an epoch begins; the trainer `epoch N: ...` once it is saved.
    if kind == "start-up":
        lock = run_dir / ".lock"
        _wait_for(proc, log, lambda: lock.is_file() and lock.read_text().strip() == str(proc.pid))
        until = time.monotonic() + rng.uniform(0.0, 1.5)
        _wait_for(proc, log, lambda: time.monotonic() > until or _lines(log, "Epoch "), 0.01)
    elif kind in ("log", "checkpoint"):
        where = "logs" if kind == "log" else "checkpoints"
        _wait_for(proc, log, lambda: _temporary_files(run_dir, where))
    elif kind == "epoch":
        _wait_for(proc, log, lambda: _lines(log, "Epoch ") >= 2)
        time.sleep(rng.uniform(0.0, 0.1))  # into it (its 5 steps take longer on any machine)


def _kill_at(kind, proc, run_dir, log, rng):
    _reach(kind, proc, run_dir, log, rng)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, _output(log)


def _untrained_copy(tiny_run, run_dir):
    """The session's tiny run, prepared and tokenized, without its training."""
    shutil.copytree(tiny_run, run_dir)
    for rel in ("checkpoints", "logs", "eval"):
        shutil.rmtree(run_dir / rel)
    for rel in ("model.keras", "stages/train.json", "stages/evaluate.json"):
        (run_dir / rel).unlink()
    return run_dir


def test_training_survives_kill_9_at_random_points(tiny_run, tmp_path):
    run_dir = _untrained_copy(tiny_run, tmp_path / "run")
    rng = random.Random(13)
    half_written, done = 0, []
    for i, kind in enumerate(KILLS):
        log = tmp_path / f"rerun-{i}-{kind}"
        proc = _train(run_dir, log)
        try:
            _kill_at(kind, proc, run_dir, log, rng)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        before, done = done, _epochs(run_dir)
        assert done == list(range(1, len(done) + 1)), (kind, done)  # consecutive, none twice
        assert len(done) >= len(before), (kind, before, done)  # none lost: it resumed
        half_written += bool(_temporary_files(run_dir, ".", "checkpoints", "logs"))
    assert half_written, "no kill fell inside a write"  # so the clean-up below is tested
    log = tmp_path / "final"
    proc = _train(run_dir, log)
    proc.wait(timeout=600)
    assert proc.returncode == 0, _output(log)
    assert "resuming from" in log.with_suffix(".out").read_text(), _output(log)
    assert _epochs(run_dir) == list(range(1, EPOCHS + 1)), _output(log)
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    src = np.array([[5, 6, 7]], np.int32)
    assert model((src, src)).shape[-1] == model.tgt_vocab_size
    assert not list(run_dir.rglob(".*.tmp*"))  # interrupted writes are cleaned up


def test_sigterm_ends_training_like_ctrl_c(tiny_run, tmp_path):
    """SIGTERM (`kill`, a job scheduler's stop) in the middle of an epoch's checkpoint writes: the
    process ends as after Ctrl-C, with exit code 143 and the resume hint, the write under way
    removed; the rerun resumes."""
    run_dir = _untrained_copy(tiny_run, tmp_path / "run")
    log = tmp_path / "terminated"
    proc = _train(run_dir, log)
    try:
        _reach("checkpoint", proc, run_dir, log, random.Random(1))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, _output(log)
    err = log.with_suffix(".err").read_text()
    assert err.strip().splitlines()[-1] == (
        "translator: terminated; rerun the same command to resume"
    ), err
    assert "Traceback" not in err
    assert not list(run_dir.rglob(".*.tmp*"))
    log = tmp_path / "rerun"
    proc = _train(run_dir, log)
    proc.wait(timeout=600)
    assert proc.returncode == 0, _output(log)
    assert _epochs(run_dir) == list(range(1, EPOCHS + 1)), _output(log)
