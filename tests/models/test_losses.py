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


def test_masked_accuracy_and_perplexity_count_real_tokens_only():
    from translator.models import MaskedAccuracy, Perplexity

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 9)).astype("float32")
    labels = np.array([[3, 5, 1, 0], [7, 0, 0, 0]])
    logits[0, 0, 3] = 10.0  # right
    logits[0, 1, 5] = -10.0  # wrong
    logits[1, 0, 7] = 10.0  # right
    logits[0, 3, 0] = 50.0  # a padded position predicting the padding id: not counted
    real = labels != 0
    accuracy = MaskedAccuracy()
    accuracy.update_state(labels, logits)
    predicted = logits.argmax(-1)
    assert float(accuracy.result()) == pytest.approx((predicted == labels)[real].mean())
    perplexity = Perplexity()
    perplexity.update_state(labels, logits)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    assert float(perplexity.result()) == pytest.approx(np.exp(nll[real].mean()), rel=1e-5)
