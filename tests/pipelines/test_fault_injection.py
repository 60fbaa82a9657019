"""Training killed (SIGKILL) at random moments, seeded, then rerun: every rerun resumes, and the run
ends with a loadable model and a metrics.csv without duplicated or missing epochs."""

import csv
import os
import random
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np

import translator.models  # noqa: F401  (registers the custom classes)

from ..conftest import TINY

EPOCHS = 15
KILLS = 10


def _epochs(run_dir):
    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _train(run_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "translator.pipelines.cli", "train", str(TINY)]
        + ["--run-dir", str(run_dir), "--set", f"train.epochs={EPOCHS}"]
        # no early stopping: a killed epoch is redone from its checkpoint, so the scores (and when
        # patience runs out) depend on where the kills fell
        + ["--set", f"train.patience={EPOCHS}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_training_survives_kill_9_at_random_points(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    for rel in ("checkpoints", "logs", "eval"):
        shutil.rmtree(run_dir / rel)
    for rel in ("model.keras", "stages/train.json", "stages/evaluate.json"):
        (run_dir / rel).unlink()
    rng = random.Random(13)
    killed = 0
    for _ in range(KILLS):
        proc = _train(run_dir)
        try:
            proc.wait(timeout=rng.uniform(2.0, 10.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        done = _epochs(run_dir)
        assert done == list(range(1, len(done) + 1)), done  # consecutive, none twice
    assert killed >= KILLS // 2, killed  # the kills fell in start-up, epochs and checkpoints
    proc = _train(run_dir)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert _epochs(run_dir) == list(range(1, EPOCHS + 1)), out + err
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    src = np.array([[5, 6, 7]], np.int32)
    assert model((src, src)).shape[-1] == model.tgt_vocab_size
    assert not list(run_dir.rglob(".*.tmp*"))  # interrupted writes are cleaned up
