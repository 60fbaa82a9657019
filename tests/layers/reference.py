"""Shared helpers of the recurrent-layer tests: NumPy references of the design equations, batches.

The recurrent layers are checked against NumPy implementations of the design document's
equations (column-vector notation, `W` acting on `[h_{t-1}, x_t]`), run sentence by sentence over
the real tokens only.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from translator.layers import STATES_PER_CELL  # noqa: E402
from translator.layers.rnn import make_rnn_layer  # noqa: E402

B, T, D, U = 3, 6, 4, 5
LENGTHS = np.array([6, 3, 1])  # right-padded rows of different lengths, one full
ATOL = RTOL = 1e-5  # float32 layers vs float64 references
KINDS = ["rnn", "gru", "lstm"]
MERGES = ["concat", "sum", "ave"]


# --------------------------------------------------------------------------- helpers


def make_batch(seed: int = 0, lengths=LENGTHS, time_steps: int = T):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(lengths), time_steps, D)).astype("float32")
    mask = np.arange(time_steps)[None, :] < np.asarray(lengths)[:, None]
    return x, mask


def randomize(layer: keras.layers.Layer, seed: int = 1, scale: float = 0.5) -> None:
    """Non-trivial weights everywhere (biases included, so the bias path is tested)."""
    rng = np.random.default_rng(seed)
    layer.set_weights(
        [(scale * rng.normal(size=w.shape)).astype("float32") for w in layer.get_weights()]
    )


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def elman_ref(weights, x, length, activation, h0=None):
    """h_t = act(W_hx x_t + W_hh h_{t-1} + b_h). Keras stores W^T (x @ kernel)."""
    kernel, recurrent, bias = (w.astype("float64") for w in weights)
    W_hx, W_hh = kernel.T, recurrent.T
    act = np.tanh if activation == "tanh" else (lambda v: np.maximum(v, 0.0))
    h = np.zeros(W_hh.shape[0]) if h0 is None else h0.astype("float64")
    outputs = []
    for t in range(length):
        h = act(W_hx @ x[t] + W_hh @ h + bias)
        outputs.append(h)
    return np.array(outputs), [h]


def lstm_ref(weights, x, length):
    """f,i,o = σ(W·[h,x]+b); g = tanh(W_g·[h,x]+b_g); c = f⊙c + i⊙g; h = o⊙tanh(c)."""
    kernel, recurrent, bias = (w.astype("float64") for w in weights)
    units = recurrent.shape[0]
    W = np.concatenate([recurrent, kernel], axis=0).T  # [4U, U+D], acts on [h_{t-1}; x_t]
    # Keras packs the gates in the order i, f, c (= g), o.
    gate = {
        g: (W[k * units : (k + 1) * units], bias[k * units : (k + 1) * units])
        for k, g in enumerate("ifgo")
    }
    h, c = np.zeros(units), np.zeros(units)
    outputs = []
    for t in range(length):
        hx = np.concatenate([h, x[t]])
        f = sigmoid(gate["f"][0] @ hx + gate["f"][1])
        i = sigmoid(gate["i"][0] @ hx + gate["i"][1])
        o = sigmoid(gate["o"][0] @ hx + gate["o"][1])
        g = np.tanh(gate["g"][0] @ hx + gate["g"][1])
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.array(outputs), [h, c]


def gru_ref(weights, x, length):
    """z,r = σ(W·[h,x]+b); h̃ = tanh(W·[r⊙h, x]+b); h_t = (1−z)⊙h_{t-1} + z⊙h̃."""
    kernel, recurrent, bias = (w.astype("float64") for w in weights)
    units = recurrent.shape[0]

    def block(k):  # Keras (reset_after=False) packs z, r, h; W_k acts on [h_{t-1}; x_t]
        cols = slice(k * units, (k + 1) * units)
        return np.concatenate([recurrent[:, cols], kernel[:, cols]], axis=0).T, bias[cols]

    W_zk, b_zk = block(0)
    W_r, b_r = block(1)
    W_h, b_h = block(2)
    # Keras computes h_t = z_k⊙h_{t-1} + (1−z_k)⊙h̃ with z_k = σ(W_zk·[h,x] + b_zk). The design's
    # update gate is z = 1 − z_k = σ(−(W_zk·[h,x] + b_zk)) (since 1 − σ(a) = σ(−a)), so the
    # design's z-gate weights and bias are the NEGATED Keras ones:
    W_z, b_z = -W_zk, -b_zk
    h = np.zeros(units)
    outputs = []
    for t in range(length):
        hx = np.concatenate([h, x[t]])
        z = sigmoid(W_z @ hx + b_z)
        r = sigmoid(W_r @ hx + b_r)
        h_tilde = np.tanh(W_h @ np.concatenate([r * h, x[t]]) + b_h)
        h = (1.0 - z) * h + z * h_tilde
        outputs.append(h)
    return np.array(outputs), [h]


def sentence_ref(kind, weights, x, length, activation="tanh"):
    if kind == "rnn":
        return elman_ref(weights, x, length, activation)
    if kind == "lstm":
        return lstm_ref(weights, x, length)
    return gru_ref(weights, x, length)


def batch_ref(kind, weights, x, lengths, activation="tanh"):
    """Outputs [B, T, U] (zeros at padding) and final states (each [B, U]) of one direction."""
    units = weights[1].shape[0]
    outputs = np.zeros(x.shape[:2] + (units,))
    states = [np.zeros((len(lengths), units)) for _ in range(STATES_PER_CELL[kind])]
    for b, length in enumerate(lengths):
        out, st = sentence_ref(kind, weights, x[b], length, activation)
        outputs[b, :length] = out
        for s, v in zip(states, st, strict=True):
            s[b] = v
    return outputs, states


def bidirectional_ref(kind, fw_weights, bw_weights, x, lengths, merge, activation="tanh"):
    """Forward pass, plus a backward pass over each sentence's real tokens reversed by hand."""
    y_f, s_f = batch_ref(kind, fw_weights, x, lengths, activation)
    x_rev = x.copy()
    for b, length in enumerate(lengths):
        x_rev[b, :length] = x[b, :length][::-1]
    y_b_rev, s_b = batch_ref(kind, bw_weights, x_rev, lengths, activation)
    y_b = np.zeros_like(y_b_rev)
    for b, length in enumerate(lengths):
        y_b[b, :length] = y_b_rev[b, :length][::-1]
    if merge == "concat":
        y = np.concatenate([y_f, y_b], axis=-1)
    elif merge == "sum":
        y = y_f + y_b
    else:
        y = (y_f + y_b) / 2
    return y, s_f + s_b


def assert_real_positions_close(actual, expected, mask):
    np.testing.assert_allclose(np.asarray(actual)[mask], expected[mask], atol=ATOL, rtol=RTOL)


def assert_states_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), e, atol=ATOL, rtol=RTOL)


def built_layer(kind, bidirectional=False, merge="concat", activation="tanh", seed=1):
    layer = make_rnn_layer(kind, U, activation=activation, bidirectional=bidirectional, merge=merge)
    x, mask = make_batch()
    layer(x, mask=mask)
    randomize(layer, seed=seed)
    return layer
