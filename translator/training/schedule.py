"""The learning rate over a run: linear warm-up, then decay when validation stops improving.

    lr(step) = learning_rate * scale * min(1, (step + 1) / warmup_steps)

`scale` starts at 1 and is multiplied by `train.lr_decay_factor` each time the plateau metric
(`train.lr_decay_metric`: validation loss or validation BLEU) has not improved for
`train.lr_decay_patience` epochs, down to `train.min_learning_rate` (as Keras'
`ReduceLROnPlateau`, JoeyNMT's `plateau` scheduler and OpenNMT-py's `decay_steps` on plateau).
Unlike Keras' callback, the counters live in the :class:`~translator.training.state.TrainState`
and the learning rate in the optimizer checkpoint, so a resumed run continues the schedule where
the checkpoint left it. Each epoch's learning rate is the `learning_rate` column of `metrics.csv`.
"""

from __future__ import annotations

import keras

from translator.config import TrainConfig
from translator.training.state import TrainState


def plateau_improved(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` of `metric` (`val_loss`: lower is better; `val_bleu`: higher) beats `best`."""
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


class LearningRateSchedule(keras.callbacks.Callback):
    """Warm-up and decay on plateau (see the module docstring); puts `learning_rate` (the rate the
    epoch ended with, before any decay it triggers) into the epoch's logs.

    Args:
        state: the run's state (its `lr_scale`, `lr_best`, `lr_bad_epochs` are the counters).
        base_rate: `train.learning_rate` (scaled for the number of replicas).
        tc: the `train` config section.
    """

    def __init__(self, state: TrainState, base_rate: float, tc: TrainConfig):
        super().__init__()
        self.state, self.base_rate = state, float(base_rate)
        self.warmup = int(tc.warmup_steps)
        self.factor, self.patience = float(tc.lr_decay_factor), int(tc.lr_decay_patience)
        self.metric = "val_loss" if tc.lr_decay_metric == "loss" else "val_bleu"
        self.min_rate = float(tc.min_learning_rate)
        self.warming = bool(self.warmup)  # still inside the warm-up (as far as known)

    def rate(self, step: int) -> float:
        """The learning rate at optimizer step `step` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        return self.base_rate * self.state.lr_scale * warm

    def _set(self, step: int) -> None:
        self.model.optimizer.learning_rate.assign(self.rate(step))

    def on_train_begin(self, logs=None):
        self._set(self._step())
        self.warming = bool(self.warmup)

    def on_train_batch_begin(self, batch, logs=None):
        # The step is read (a wait for the device) only during the warm-up; after it the rate
        # changes only at epoch ends.
        if self.warming:
            step = self._step()
            self.warming = step <= self.warmup
            if self.warming:
                self._set(step)

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
        value = logs.get(self.metric)
        if value is None or self.factor >= 1.0:
            return
        if plateau_improved(self.metric, value, self.state.lr_best):
            self.state.lr_best, self.state.lr_bad_epochs = float(value), 0
            return
        self.state.lr_bad_epochs += 1
        if self.state.lr_bad_epochs < self.patience:
            return
        self.state.lr_bad_epochs = 0
        floor = self.min_rate / self.base_rate if self.base_rate else 0.0
        scale = max(self.state.lr_scale * self.factor, floor)
        if scale < self.state.lr_scale:
            self.state.lr_scale = scale
            self._set(self._step())
            print(
                f"epoch {epoch + 1}: no {self.metric} gain for {self.patience} epochs; "
                f"learning rate -> {self.rate(self.warmup):.3g}",
                flush=True,
            )
