"""Tests for translator.training.state: the training result summarised from the saved state."""

import pytest


def test_training_speed_is_tokens_over_seconds_of_all_epochs():
    from translator.training import TrainResult, TrainState

    rows = [
        {"epoch": 1, "epoch_seconds": 80.0, "train_tokens_per_s": 3000.0},
        {"epoch": 2, "epoch_seconds": 2.0, "train_tokens_per_s": 400.0},  # cut by the budget
    ]
    state = {"epoch": 2, "best_epoch": 1, "best_bleu": 1.0, "elapsed_seconds": 90.0}
    result = TrainResult.from_state(TrainState("fp", **state, stop_reason="time", history=rows))
    assert result.train_tokens_per_s == pytest.approx((3000 * 80 + 400 * 2) / 82)
    empty = TrainState("fp", **state, stop_reason=None, history=[])
    assert TrainResult.from_state(empty).train_tokens_per_s == 0.0
