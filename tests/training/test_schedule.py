"""The learning-rate schedule: warm-up, decay on plateau, its counters across a restart."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from translator.config import ConfigError, TrainConfig
from translator.training.schedule import LearningRateSchedule, plateau_improved
from translator.training.state import TrainState


def _model(rate: float) -> keras.Model:
    model = keras.Sequential([keras.layers.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse")
    return model


def _callback(state: TrainState, rate: float, **train) -> LearningRateSchedule:
    cb = LearningRateSchedule(state, rate, TrainConfig(learning_rate=rate, **train))
    cb.set_model(_model(rate))
    return cb


def _lr(cb) -> float:
    return float(cb.model.optimizer.learning_rate.numpy())


def test_warmup_is_linear_then_flat():
    cb = _callback(TrainState("f"), 0.01, warmup_steps=4)
    rates = []
    for step in range(6):
        cb.model.optimizer.iterations.assign(step)
        cb.on_train_batch_begin(step)
        rates.append(_lr(cb))
    np.testing.assert_allclose(rates, [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01], rtol=1e-6)


def test_decay_after_patience_epochs_without_gain_and_floor():
    state = TrainState("f")
    cb = _callback(state, 0.01, lr_decay_factor=0.5, lr_decay_patience=2, min_learning_rate=0.002)
    cb.on_train_begin()
    seen = []
    for loss in [5.0, 4.0, 4.5, 4.2, 4.1, 4.3, 4.4, 4.5, 4.6, 4.7]:
        logs = {"val_loss": loss}
        cb.on_epoch_end(0, logs)
        seen.append((logs["learning_rate"], _lr(cb)))
    # Gains at 5.0, 4.0; no gain at 4.5, 4.2 -> halve; 4.1, 4.3 -> halve; then the floor.
    after = [round(a, 6) for _, a in seen]
    assert after == [0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.002, 0.002, 0.002]
    # The logged rate is the one the epoch trained with (before the decay it triggers).
    assert round(seen[3][0], 6) == 0.01
    assert state.lr_scale == pytest.approx(0.2)


def test_bleu_metric_and_no_decay_by_default():
    assert plateau_improved("val_bleu", 3.0, 2.0) and not plateau_improved("val_loss", 3.0, 2.0)
    state = TrainState("f")
    cb = _callback(state, 0.01)
    cb.on_train_begin()
    for _ in range(5):
        cb.on_epoch_end(0, {"val_loss": 4.0})
    assert _lr(cb) == pytest.approx(0.01) and state.lr_scale == 1.0
    state = TrainState("f")
    cb = _callback(state, 0.01, lr_decay_factor=0.5, lr_decay_patience=1, lr_decay_metric="bleu")
    cb.on_train_begin()
    for bleu in [1.0, 2.0, 1.5]:
        cb.on_epoch_end(0, {"val_bleu": bleu, "val_loss": 9.0})
    assert _lr(cb) == pytest.approx(0.005)


def test_counters_survive_a_restart(tmp_path):
    state = TrainState("f")
    cb = _callback(state, 0.01, lr_decay_factor=0.5, lr_decay_patience=2)
    cb.on_train_begin()
    for loss in [4.0, 4.1]:
        cb.on_epoch_end(0, {"val_loss": loss})
    state.save(tmp_path / "state.json")
    resumed = TrainState.load(tmp_path / "state.json", "f")
    assert (resumed.lr_best, resumed.lr_bad_epochs, resumed.lr_scale) == (4.0, 1, 1.0)
    cb = _callback(resumed, 0.01, lr_decay_factor=0.5, lr_decay_patience=2)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"val_loss": 4.2})  # the second epoch without a gain, counted across
    assert _lr(cb) == pytest.approx(0.005)
    # A fresh model (as a resumed checkpoint) gets the state's rate at the start.
    cb2 = _callback(resumed, 0.01, lr_decay_factor=0.5, lr_decay_patience=2)
    cb2.on_train_begin()
    assert _lr(cb2) == pytest.approx(0.005)


@pytest.mark.parametrize(
    "key,value",
    [
        ("warmup_steps", -1),
        ("lr_decay_factor", 0.0),
        ("lr_decay_factor", 1.5),
        ("lr_decay_patience", 0),
        ("min_learning_rate", -1.0),
        ("valid_beam_size", 0),
    ],
)
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        TrainConfig(**{key: value})
