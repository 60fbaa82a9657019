"""Training callbacks, one job each.

Keras' own `TensorBoard` callback writes the event files. What Keras lacks is here: the validation
BLEU, and everything that must survive a restart (its `EarlyStopping`, `ModelCheckpoint` and
`CSVLogger` forget their state when a run is killed and resumed, and do not write atomically):
patience and the time budget are counted in :class:`~translator.training.state.TrainState`,
and the checkpoint, the state and `metrics.csv` are written after each epoch, atomically, in that
order, so a kill leaves a run that resumes at a whole epoch.

The callbacks run in the order `train` passes them; each reads what the earlier ones put in the
epoch's `logs` (throughput -> validation BLEU -> checkpoint average -> best model -> checkpoint).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras

from translator.evaluation.metrics import bleu, bleu_lengths
from translator.io import atomic_path, atomic_write_text
from translator.models.saving import save_model
from translator.plots import plot_learning_curves
from translator.training.averaging import (
    average_checkpoints,
    epoch_weights,
    epoch_weights_path,
    epochs_to_keep,
    save_weights,
    spare_model,
)
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
    """Decodes the validation sources after each epoch (greedy, or beam search with
    `beam_size > 1` and the translator's other decoding settings); puts `val_bleu` and
    `val_length_ratio` (hypothesis over reference length, BLEU's tokens) into the logs.

    Args:
        translator: a `Translator` over the model being trained.
        sources, references: the validation pairs' two sides.
        beam_size: `train.valid_beam_size`.
    """

    def __init__(
        self, translator, sources: Sequence[str], references: Sequence[str], beam_size: int = 1
    ):
        super().__init__()
        self.translator, self.beam_size = translator, int(beam_size)
        self.sources, self.references = list(sources), list(references)

    def on_epoch_end(self, epoch, logs=None):
        with warnings.catch_warnings():  # empty outputs are expected early in training
            warnings.simplefilter("ignore", UserWarning)
            hyps = self.translator.translate(self.sources, beam_size=self.beam_size)
        logs["val_bleu"] = bleu(hyps, self.references)
        sys_len, ref_len = bleu_lengths(hyps, self.references)
        logs["val_length_ratio"] = round(sys_len / max(ref_len, 1), 4)


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


class CheckpointAverage(keras.callbacks.Callback):
    """Checkpoint averaging (`train.average_checkpoints: n`).

    After each epoch: its model weights (no optimizer state) go to `epoch-NNNN.weights.h5` in
    `directory`, atomically; of the kept files, the last `n` epochs' and the `n` best by
    `val_bleu` stay and the others are deleted. Once the last `n` epochs are all kept, their
    element-wise mean is loaded into a second instance of the model (`spare`; the weights being
    trained are not touched) and its validation BLEU, decoded as `validation` decodes, goes into
    the logs as `val_bleu_avg`, for :class:`BestModel` to compare. The kept files are the state:
    a resumed run finds them (and their BLEU in the state's history) and averages the same files.

    Args:
        state: the training state (its history holds the kept epochs' `val_bleu`).
        directory: where the epoch files are written (the run's `checkpoints/`).
        n: how many epochs are averaged (and kept).
        validation: the run's :class:`ValidationBLEU` (the pairs and decoding of the score).
        read_from: where a resumed run's kept files are (default `directory`; a multi-worker
            worker other than the chief copies the chief's into its scratch `directory`).
    """

    def __init__(
        self,
        state: TrainState,
        directory: Path,
        n: int,
        validation: ValidationBLEU,
        read_from: Path | None = None,
    ):
        super().__init__()
        if n < 2:
            raise ValueError(f"checkpoint averaging needs at least 2 epochs, got {n}")
        self.state, self.directory, self.n, self.validation = state, Path(directory), n, validation
        self.read_from = Path(read_from) if read_from is not None else self.directory
        self.spare: keras.Model | None = None
        self.spare_translator = None
        self.kept: dict[int, float | None] = {}  # epoch -> its val_bleu
        self.replaced: list[Path] = []  # a finished run's epoch files, deleted at the first epoch
        self.averaged_epochs: list[int] = []  # what `spare` holds after this epoch, if averaged

    def on_train_begin(self, logs=None):
        from translator.translate import Translator

        self.spare = spare_model(self.model)
        t = self.validation.translator
        self.spare_translator = Translator(self.spare, t.src_tokenizer, t.tgt_tokenizer, t.decode)
        scores = {int(row["epoch"]): row.get("val_bleu") for row in self.state.history}
        self.kept = {}
        self.replaced = []
        for epoch, path in epoch_weights(self.read_from).items():
            if epoch > self.state.epoch or epoch not in scores:
                if path.parent != self.directory:
                    continue
                if self.state.epoch == 0:
                    # A finished run's, trained again from scratch (--force): kept until this
                    # run's first epoch replaces its checkpoints (an interruption before that
                    # leaves that run whole).
                    self.replaced.append(path)
                else:  # an epoch that the resumed checkpoint does not include: it is redone
                    path.unlink(missing_ok=True)
                continue
            if self.read_from != self.directory:
                with atomic_path(epoch_weights_path(self.directory, epoch)) as tmp:
                    shutil.copyfile(path, tmp)
            self.kept[epoch] = scores[epoch]

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        for path in self.replaced:
            path.unlink(missing_ok=True)
        self.replaced = []
        self.spare.set_weights(self.model.get_weights())
        save_weights(self.spare, epoch_weights_path(self.directory, done))
        self.kept[done] = logs["val_bleu"]
        for old in sorted(set(self.kept) - epochs_to_keep(self.kept, self.n)):
            epoch_weights_path(self.directory, old).unlink(missing_ok=True)
            del self.kept[old]
        last = list(range(done - self.n + 1, done + 1))
        self.averaged_epochs = []
        if last[0] >= 1 and all(e in self.kept for e in last):
            average_checkpoints(self.spare, [epoch_weights_path(self.directory, e) for e in last])
            v = self.validation
            with warnings.catch_warnings():  # decoded as ValidationBLEU decodes
                warnings.simplefilter("ignore", UserWarning)
                hyps = self.spare_translator.translate(v.sources, beam_size=v.beam_size)
            logs["val_bleu_avg"] = bleu(hyps, v.references)
            self.averaged_epochs = last


class BestModel(keras.callbacks.Callback):
    """Saves the model with the best validation BLEU to `path`: the epoch's model (`val_bleu`)
    or, with `average`, the average of the last checkpoints when its `val_bleu_avg` is higher
    still (the state's `best_averaged` says which); stops after `patience` epochs without a gain
    of either (the count is kept in the state, so it survives a restart)."""

    def __init__(
        self,
        state: TrainState,
        path: Path,
        patience: int,
        average: CheckpointAverage | None = None,
    ):
        super().__init__()
        self.state, self.path, self.patience, self.average = state, path, patience, average

    def on_epoch_end(self, epoch, logs=None):
        val_bleu, averaged = logs["val_bleu"], logs.get("val_bleu_avg")
        if averaged is not None and averaged > max(val_bleu, self.state.best_bleu):
            self._new_best(epoch, averaged, self.average.spare, len(self.average.averaged_epochs))
            return
        if val_bleu > self.state.best_bleu:
            self._new_best(epoch, val_bleu, self.model, 0)
            return
        self.state.bad_epochs += 1
        if self.state.bad_epochs >= self.patience:
            self.state.stop_reason = (
                f"early stopping: no validation BLEU gain for {self.patience} epochs"
            )
            self.model.stop_training = True

    def _new_best(self, epoch: int, score: float, model: keras.Model, averaged: int) -> None:
        self.state.best_bleu, self.state.best_epoch = score, epoch + 1
        self.state.best_averaged, self.state.bad_epochs = averaged, 0
        save_model(model, self.path)


def describe_best(state: TrainState) -> str:
    """`best 12.34 at epoch 7`, with `(the average of epochs 5-7)` when the best is an average."""
    text = f"best {state.best_bleu:.2f} at epoch {state.best_epoch}"
    if state.best_averaged:
        first = state.best_epoch - state.best_averaged + 1
        text += f" (the average of epochs {first}-{state.best_epoch})"
    return text


def add_checkpoint_average(
    callbacks: list[keras.callbacks.Callback],
    state: TrainState,
    n: int,
    directory: Path,
    read_from: Path | None = None,
) -> CheckpointAverage:
    """Insert a :class:`CheckpointAverage` of `n` epochs into `callbacks` (in place) just before
    their :class:`BestModel`, which then compares the average too; it scores the average as
    their :class:`ValidationBLEU` scores the epoch. Returns the new callback."""
    validation = next(c for c in callbacks if isinstance(c, ValidationBLEU))
    best = next(c for c in callbacks if isinstance(c, BestModel))
    if callbacks.index(validation) > callbacks.index(best):
        raise ValueError("ValidationBLEU must come before BestModel")
    best.average = CheckpointAverage(state, directory, n, validation, read_from)
    callbacks.insert(callbacks.index(best), best.average)
    return best.average


class DropStageRecord(keras.callbacks.Callback):
    """Training over a finished run, from scratch (`--force`) or continued (more epochs): the
    finished run stays whole (its model, checkpoints, epoch files and stage record) until this
    run's first epoch ends; then, before any of it is replaced, its stage record (`paths`) goes,
    so that an interruption from there on leaves a run to resume rather than one whose record
    says it is up to date while its model is the new run's."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.paths = list(paths)

    def on_epoch_end(self, epoch, logs=None):
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths = []


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
        averaged = row.get("val_bleu_avg")
        averaged = "" if averaged is None else f", val_bleu_avg {averaged:.2f}"
        print(
            f"epoch {epoch + 1}: val_bleu {row['val_bleu']:.2f}{averaged} "
            f"(length ratio {row['val_length_ratio']:.2f}; {describe_best(self.state)}), "
            f"{row['train_tokens_per_s']:.0f} target tokens/s, "
            f"elapsed {row['elapsed_seconds'] / 60:.1f} min",
            flush=True,
        )
