"""Training callbacks, one job each.

Keras' own `TensorBoard` callback writes the event files. What Keras lacks is here: the validation
BLEU, and everything that must survive a restart (its `EarlyStopping`, `ModelCheckpoint` and
`CSVLogger` forget their state when a run is killed and resumed, and do not write atomically):
patience and the time budget are counted in :class:`~translator.training.state.TrainState`,
and the checkpoint, the state and `metrics.csv` are written after each epoch, atomically, in that
order, so a kill leaves a run that resumes at a whole epoch.

The callbacks run in the order `train` passes them; each reads what the earlier ones put in the
epoch's `logs` (throughput -> validation BLEU -> best model -> checkpoint).
"""

from __future__ import annotations

import csv
import io
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from translator.evaluation.metrics import bleu
from translator.io import atomic_write_text
from translator.models.saving import save_model
from translator.plots import plot_learning_curves
from translator.training.state import METRIC_COLUMNS, TrainState


def write_metrics(log_dir: Path, history: list[dict]) -> None:
    """Write `metrics.csv` (one row per epoch) and the learning-curve PNG."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    w.writeheader()
    for row in history:
        w.writerow(row)
    atomic_write_text(log_dir / "metrics.csv", buf.getvalue())
    plot_learning_curves({"": history}, log_dir / "learning_curve.png")


class Throughput(keras.callbacks.Callback):
    """Puts `steps`, `epoch_seconds` and `train_tokens_per_s` into the epoch's logs.

    Args:
        tokens_per_step: the mean number of target tokens in a training batch.
    """

    def __init__(self, tokens_per_step: float):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.t_epoch = 0.0
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch = time.time()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self.t_epoch
        logs["steps"] = self.steps
        logs["epoch_seconds"] = round(seconds, 2)
        tokens = self.tokens_per_step * self.steps
        logs["train_tokens_per_s"] = round(tokens / max(seconds, 1e-9), 1)


class ValidationBLEU(keras.callbacks.Callback):
    """Greedy-decodes the validation sources after each epoch; puts `val_bleu` into the logs.

    Args:
        translator: a `Translator` over the model being trained.
        sources, references: the validation pairs' two sides.
    """

    def __init__(self, translator, sources: Sequence[str], references: Sequence[str]):
        super().__init__()
        self.translator = translator
        self.sources, self.references = list(sources), list(references)

    def on_epoch_end(self, epoch, logs=None):
        with warnings.catch_warnings():  # empty outputs are expected early in training
            warnings.simplefilter("ignore", UserWarning)
            hyps = self.translator.translate(self.sources, beam_size=1)
        logs["val_bleu"] = bleu(hyps, self.references)


class TimeBudget(keras.callbacks.Callback):
    """Stops training (mid-epoch) once the run's total time exceeds `max_minutes`, counting the
    time of earlier sessions from the state."""

    def __init__(self, state: TrainState, max_minutes: float | None, agree=None):
        super().__init__()
        self.state, self.max_minutes = state, max_minutes
        self.agree = agree or (lambda seconds: seconds)
        self.t_start = 0.0

    def elapsed(self) -> float:
        """Seconds of training so far, this session included (with multi-worker training, the
        workers' mean: `agree`, so that all stop at the same step)."""
        return self.agree(self.state.elapsed_seconds + (time.time() - self.t_start))

    def on_train_begin(self, logs=None):
        self.t_start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self.max_minutes is not None and self.elapsed() > self.max_minutes * 60:
            self.state.stop_reason = f"time budget of {self.max_minutes} minutes reached"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs["elapsed_seconds"] = round(self.elapsed(), 2)
        self.state.elapsed_seconds = self.elapsed()
        self.t_start = time.time()


class BestModel(keras.callbacks.Callback):
    """Saves the model with the best `val_bleu` to `path`; stops after `patience` epochs without a
    gain (the count is kept in the state, so it survives a restart)."""

    def __init__(self, state: TrainState, path: Path, patience: int):
        super().__init__()
        self.state, self.path, self.patience = state, path, patience

    def on_epoch_end(self, epoch, logs=None):
        val_bleu = logs["val_bleu"]
        if val_bleu > self.state.best_bleu:
            self.state.best_bleu, self.state.best_epoch = val_bleu, epoch + 1
            self.state.bad_epochs = 0
            save_model(self.model, self.path)
            return
        self.state.bad_epochs += 1
        if self.state.bad_epochs >= self.patience:
            self.state.stop_reason = (
                f"early stopping: no validation BLEU gain for {self.patience} epochs"
            )
            self.model.stop_training = True


class Checkpoint(keras.callbacks.Callback):
    """After each epoch: the epoch's row into the history; the previous checkpoint pair
    (`last.keras`, `state.json`) becomes (`previous.keras`, `previous.json`); then the new
    `last.keras` (weights and optimizer state) and the `state.json` that describes it; then
    `metrics.csv` and the learning curve. Every file is written atomically, and the previous pair is
    kept until the new one is whole, so a kill at any point, or a damaged latest checkpoint, resumes
    from a whole epoch (see `trainer.resume`)."""

    def __init__(self, state: TrainState, run):
        super().__init__()
        self.state, self.run = state, run

    def on_epoch_end(self, epoch, logs=None):
        run = self.run
        row = {k: logs.get(k) for k in METRIC_COLUMNS}
        row["epoch"] = epoch + 1
        self.state.history.append(row)
        self.state.epoch = epoch + 1
        self.state.optimizer_steps = int(self.model.optimizer.iterations.numpy())
        if run.last_checkpoint.is_file() and run.train_state.is_file():
            os.replace(run.train_state, run.previous_train_state)
            os.replace(run.last_checkpoint, run.previous_checkpoint)
        save_model(self.model, run.last_checkpoint)
        self.state.save(run.train_state)
        write_metrics(run.logs, self.state.history)
        print(
            f"epoch {epoch + 1}: val_bleu {row['val_bleu']:.2f} (best {self.state.best_bleu:.2f} "
            f"at epoch {self.state.best_epoch}), {row['train_tokens_per_s']:.0f} target tokens/s, "
            f"elapsed {row['elapsed_seconds'] / 60:.1f} min",
            flush=True,
        )
