"""Tests for translator.layers.bidirectional: the bidirectional wrapper.

Checked against the NumPy references in `reference.py`, the backward pass reversing each sentence's
real tokens by hand.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from translator.layers import STATES_PER_CELL  # noqa: E402

from .reference import (  # noqa: E402
    ATOL,
    KINDS,
    LENGTHS,
    MERGES,
    RTOL,
    B,
    T,
    U,
    assert_real_positions_close,
    assert_states_close,
    bidirectional_ref,
    built_layer,
    elman_ref,
    make_batch,
)

# --------------------------------------------------------------------------- bidirectional


@pytest.mark.parametrize("merge", MERGES)
@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_matches_manual_reversal(kind, merge):
    layer = built_layer(kind, bidirectional=True, merge=merge)
    x, mask = make_batch(seed=6)
    sequence, *states = layer(x, mask=mask)
    assert len(states) == 2 * STATES_PER_CELL[kind]
    expected_seq, expected_states = bidirectional_ref(
        kind,
        layer.forward_layer.get_weights(),
        layer.backward_layer.get_weights(),
        x,
        LENGTHS,
        merge,
    )
    assert sequence.shape == expected_seq.shape
    assert_real_positions_close(sequence, expected_seq, mask)
    assert np.all(np.asarray(sequence)[~mask] == 0.0)
    assert_states_close(states, expected_states)


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_without_mask_uses_full_rows(kind):
    layer = built_layer(kind, bidirectional=True, merge="concat")
    x, _ = make_batch(seed=7)
    sequence, *states = layer(x)
    full = np.full(B, T)
    expected_seq, expected_states = bidirectional_ref(
        kind,
        layer.forward_layer.get_weights(),
        layer.backward_layer.get_weights(),
        x,
        full,
        "concat",
    )
    np.testing.assert_allclose(sequence, expected_seq, atol=ATOL, rtol=RTOL)
    assert_states_close(states, expected_states)


def test_bidirectional_initial_state_goes_to_each_direction():
    layer = built_layer("rnn", bidirectional=True, merge="sum")
    x, mask = make_batch(seed=8)
    rng = np.random.default_rng(9)
    h0_f, h0_b = (rng.normal(size=(B, U)).astype("float32") for _ in range(2))
    sequence, h_f, h_b = layer(x, mask=mask, initial_state=[h0_f, h0_b])
    for b, length in enumerate(LENGTHS):
        y_f, (s_f,) = elman_ref(layer.forward_layer.get_weights(), x[b], length, "tanh", h0_f[b])
        y_b, (s_b,) = elman_ref(
            layer.backward_layer.get_weights(), x[b, :length][::-1], length, "tanh", h0_b[b]
        )
        np.testing.assert_allclose(sequence[b, :length], y_f + y_b[::-1], atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(h_f[b], s_f, atol=ATOL, rtol=RTOL)
        np.testing.assert_allclose(h_b[b], s_b, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_gradients_equal_each_row_run_alone(kind):
    """The reversal of the backward direction passes gradients to the right tokens: the batch's
    gradients (inputs and weights) are the sums of those of each row run alone without padding,
    and padded inputs get none."""
    import tensorflow as tf

    layer = built_layer(kind, bidirectional=True, merge="concat")
    x, mask = make_batch(seed=10)
    rng = np.random.default_rng(11)
    w_out = rng.normal(size=(B, T, 2 * U)).astype("float32")

    def loss_and_grads(inputs, row_mask, weights):
        inputs = tf.constant(inputs)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            sequence, *states = layer(inputs, mask=row_mask)
            loss = tf.reduce_sum(sequence * weights) + sum(tf.reduce_sum(s) for s in states)
        return tape.gradient(loss, [inputs, *layer.trainable_weights])

    batch_grads = loss_and_grads(x, mask, w_out)
    assert np.all(np.asarray(batch_grads[0])[~mask] == 0.0)
    row_sums = None
    for b, length in enumerate(LENGTHS):
        grads = loss_and_grads(
            x[b : b + 1, :length], np.ones((1, length), bool), w_out[b : b + 1, :length]
        )
        np.testing.assert_allclose(batch_grads[0][b, :length], grads[0][0], atol=ATOL, rtol=RTOL)
        weights = [np.asarray(g) for g in grads[1:]]
        row_sums = (
            weights if row_sums is None else [s + g for s, g in zip(row_sums, weights, strict=True)]
        )
    for got, want in zip(batch_grads[1:], row_sums, strict=True):
        np.testing.assert_allclose(got, want, atol=10 * ATOL, rtol=10 * RTOL)
