"""Tests for translator.cells: the Elman cell and layer, the bidirectional wrapper, the factory.

The recurrent layers are checked against NumPy implementations of the design document's
equations (column-vector notation, `W` acting on `[h_{t-1}, x_t]`), run sentence by sentence over
the real tokens only.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.layers import STATES_PER_CELL  # noqa: E402
from translator.layers.bidirectional import BidirectionalRNN  # noqa: E402
from translator.layers.elman import ElmanCell, ElmanRNN  # noqa: E402
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


# --------------------------------------------------------------------------- padding, gradients


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_extra_padding_changes_nothing(kind, bidirectional):
    layer = built_layer(kind, bidirectional=bidirectional)
    x, mask = make_batch(seed=10)
    garbage = np.random.default_rng(11).normal(size=(B, 3, D)).astype("float32")
    x_pad = np.concatenate([x, garbage], axis=1)
    mask_pad = np.concatenate([mask, np.zeros((B, 3), bool)], axis=1)
    sequence, *states = layer(x, mask=mask)
    sequence_pad, *states_pad = layer(x_pad, mask=mask_pad)
    np.testing.assert_allclose(
        np.asarray(sequence_pad)[:, :T][mask], np.asarray(sequence)[mask], atol=1e-6
    )
    assert_states_close(states_pad, [np.asarray(s) for s in states])
    if bidirectional:
        assert np.all(np.asarray(sequence_pad)[~mask_pad] == 0.0)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_every_weight_gets_a_gradient(kind, bidirectional):
    layer = built_layer(kind, bidirectional=bidirectional)
    x, mask = make_batch(seed=12)
    rng = np.random.default_rng(13)
    with tf.GradientTape() as tape:
        outputs = layer(x, mask=mask, training=True)
        loss = sum(tf.reduce_sum(o * rng.normal(size=o.shape).astype("float32")) for o in outputs)
    variables = layer.trainable_variables
    assert len(variables) == (6 if bidirectional else 3)
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads, strict=True):
        assert g is not None, v.path
        assert np.all(np.isfinite(g)), v.path
        assert np.any(np.asarray(g) != 0.0), v.path


# --------------------------------------------------------------------------- serialization


def test_save_load_round_trip(tmp_path):
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, D, mask_zero=True)(tokens)
    enc1 = BidirectionalRNN(
        ElmanRNN(
            U,
            activation="relu",
            recurrent_initializer="identity",
            return_sequences=True,
            return_state=True,
        ),
        merge_mode="concat",
        name="enc1",
    )(embedded)
    enc2 = make_rnn_layer("lstm", U, bidirectional=True, merge="sum", name="enc2")(enc1[0])
    top, h = ElmanRNN(U, return_sequences=True, return_state=True, name="top")(enc2[0])
    model = keras.Model(tokens, [top, h, *enc1, *enc2])
    for layer in model.layers:
        if layer.weights:
            randomize(layer, seed=len(layer.name))
    ids = np.array([[3, 4, 5, 6, 7, 8], [1, 2, 3, 0, 0, 0], [9, 0, 0, 0, 0, 0]], "int32")
    before = model(ids)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("enc1"), BidirectionalRNN)
    assert isinstance(loaded.get_layer("top"), ElmanRNN)
    after = loaded(ids)
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


LAYER_FACTORIES = {
    "elman_rnn": lambda: ElmanRNN(
        U, activation="relu", dropout=0.1, return_sequences=True, return_state=True
    ),
    "bi_rnn": lambda: make_rnn_layer("rnn", U, bidirectional=True, merge="ave", name="bi"),
    "bi_gru": lambda: make_rnn_layer("gru", U, bidirectional=True, merge="sum"),
    "bi_lstm": lambda: make_rnn_layer("lstm", U, bidirectional=True, merge="concat"),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_config_round_trip(name):
    layer = LAYER_FACTORIES[name]()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x, mask = make_batch(seed=14)
    layer(x, mask=mask)
    randomize(layer)
    clone(x, mask=mask)
    clone.set_weights(layer.get_weights())
    for a, b in zip(layer(x, mask=mask), clone(x, mask=mask), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer)


def test_cell_config_round_trip_and_registration():
    cell = ElmanCell(
        U, activation="relu", recurrent_initializer="identity", recurrent_dropout=0.2, seed=3
    )
    config = cell.get_config()
    assert ElmanCell.from_config(config).get_config() == config
    for cls in (ElmanCell, ElmanRNN, BidirectionalRNN):
        assert keras.saving.get_registered_name(cls) == f"translator>{cls.__name__}"


# --------------------------------------------------------------------------- factory, arguments


@pytest.mark.parametrize("kind", KINDS)
def test_make_rnn_layer_contract(kind):
    layer = make_rnn_layer(kind, U, recurrent_initializer="glorot_uniform", seed=1)
    expected_type = {"rnn": ElmanRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
    assert isinstance(layer, expected_type)
    assert layer.return_sequences and layer.return_state
    assert isinstance(layer.cell.recurrent_initializer, keras.initializers.GlorotUniform)
    if kind == "gru":
        assert layer.cell.reset_after is False
    bi = make_rnn_layer(kind, U, bidirectional=True, merge="sum", name="enc")
    assert isinstance(bi, BidirectionalRNN) and bi.merge_mode == "sum"
    assert (bi.name, bi.forward_layer.name, bi.backward_layer.name) == (
        "enc",
        "forward_enc",
        "backward_enc",
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid choices: tanh, relu"):
        ElmanCell(U, activation="sigmoid")
    with pytest.raises(ValueError, match="valid choices: tanh, relu"):
        make_rnn_layer("rnn", U, activation="sigmoid")
    with pytest.raises(ValueError, match="valid choices: concat, sum, ave"):
        BidirectionalRNN(ElmanRNN(U, return_sequences=True, return_state=True), merge_mode="mul")
    with pytest.raises(ValueError, match="valid choices: concat, sum, ave"):
        make_rnn_layer("gru", U, bidirectional=True, merge="mul")
    with pytest.raises(ValueError, match="only valid for the Elman cell"):
        make_rnn_layer("gru", U, recurrent_initializer="identity")
    with pytest.raises(ValueError, match="only valid for the Elman cell"):
        make_rnn_layer("lstm", U, recurrent_initializer="identity")
    with pytest.raises(ValueError, match="valid choices: rnn, gru, lstm"):
        make_rnn_layer("cnn", U)
    with pytest.raises(ValueError, match="return_state=True"):
        BidirectionalRNN(keras.layers.GRU(U, return_sequences=True))
    with pytest.raises(ValueError, match="go_backwards=False"):
        BidirectionalRNN(ElmanRNN(U, return_sequences=True, return_state=True, go_backwards=True))
