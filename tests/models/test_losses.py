"""Tests for translator.models.losses: the masked cross-entropy."""

import numpy as np
import pytest

from translator.models import MaskedCrossEntropy


def test_masked_loss_ignores_padding():
    loss = MaskedCrossEntropy()
    logits = np.random.default_rng(1).normal(size=(2, 3, 7)).astype("float32")
    labels = np.array([[4, 5, 0], [6, 0, 0]])
    padded_logits = logits.copy()
    padded_logits[0, 2] += 100.0  # changes only a padded position
    assert float(loss(labels, logits)) == pytest.approx(float(loss(labels, padded_logits)))
