"""Tests for translator.layers.elman: the Elman cell and layer.

Checked against the NumPy references of the design document's equations in `reference.py`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from translator.layers import STATES_PER_CELL  # noqa: E402
from translator.layers.elman import ElmanCell, ElmanRNN  # noqa: E402
from translator.layers.rnn import make_rnn_layer  # noqa: E402

from .reference import (  # noqa: E402
    LENGTHS,
    U,
    assert_real_positions_close,
    assert_states_close,
    batch_ref,
    built_layer,
    make_batch,
    randomize,
)

# --------------------------------------------------------------------------- equations


@pytest.mark.parametrize(
    "kind,activation", [("rnn", "tanh"), ("rnn", "relu"), ("gru", "tanh"), ("lstm", "tanh")]
)
def test_layer_matches_design_equation(kind, activation):
    layer = built_layer(kind, activation=activation)
    x, mask = make_batch(seed=2)
    sequence, *states = layer(x, mask=mask)
    assert len(states) == STATES_PER_CELL[kind]
    expected_seq, expected_states = batch_ref(kind, layer.get_weights(), x, LENGTHS, activation)
    assert_real_positions_close(sequence, expected_seq, mask)
    assert_states_close(states, expected_states)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_elman_rnn_matches_keras_rnn_of_elman_cell(go_backwards, return_sequences):
    kwargs = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards)
    fast = ElmanRNN(U, **kwargs)
    slow = keras.layers.RNN(ElmanCell(U), **kwargs)
    x, mask = make_batch(seed=3)
    fast(x)
    slow(x)
    randomize(fast)
    slow.set_weights(fast.get_weights())
    for m in (mask, None):
        out_fast, h_fast = fast(x, mask=m)
        out_slow, h_slow = slow(x, mask=m)
        np.testing.assert_allclose(out_fast, out_slow, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(h_fast, h_slow, atol=1e-6, rtol=1e-6)


def test_elman_rnn_dropout_matches_keras_rnn_of_elman_cell():
    kwargs = dict(dropout=0.4, recurrent_dropout=0.3, seed=7)
    fast = ElmanRNN(U, return_sequences=True, return_state=True, **kwargs)
    slow = keras.layers.RNN(ElmanCell(U, **kwargs), return_sequences=True, return_state=True)
    x, mask = make_batch(seed=4)
    fast(x)
    slow(x)
    randomize(fast)
    slow.set_weights(fast.get_weights())
    out_fast, h_fast = fast(x, mask=mask, training=True)
    out_slow, h_slow = slow(x, mask=mask, training=True)
    np.testing.assert_allclose(out_fast, out_slow, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(h_fast, h_slow, atol=1e-6, rtol=1e-6)
    out_eval, _ = fast(x, mask=mask, training=False)
    assert not np.allclose(out_eval, out_fast)  # the masks were really applied


def test_identity_initializer():
    layer = ElmanRNN(
        U,
        activation="relu",
        recurrent_initializer="identity",
        bias_initializer="ones",  # overridden: identity forces a zero bias
        return_sequences=True,
        return_state=True,
    )
    x, mask = make_batch(seed=5)
    sequence, h = layer(x, mask=mask)
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), np.eye(U))
    np.testing.assert_array_equal(layer.cell.bias.numpy(), np.zeros(U))
    assert np.all(np.isfinite(sequence)) and np.all(np.asarray(sequence) >= 0)
    assert layer.get_config()["recurrent_initializer"] == "identity"
    rebuilt = make_rnn_layer("rnn", U, activation="relu", recurrent_initializer="identity")
    rebuilt(x, mask=mask)
    np.testing.assert_array_equal(rebuilt.cell.recurrent_kernel.numpy(), np.eye(U))
