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
