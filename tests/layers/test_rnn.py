"""Tests for translator.layers.rnn: the `make_rnn_layer` factory and the layers it makes.

Padding invariance and gradients over every kind (uni- and bidirectional), save/load and config
round trips, bad arguments.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.layers.bidirectional import BidirectionalRNN  # noqa: E402
from translator.layers.elman import ElmanCell, ElmanRNN  # noqa: E402
from translator.layers.lstm import LSTM  # noqa: E402
from translator.layers.rnn import make_rnn_layer  # noqa: E402

from .reference import (  # noqa: E402
    KINDS,
    B,
    D,
    T,
    U,
    assert_states_close,
    built_layer,
    make_batch,
    randomize,
)

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
    expected_type = {"rnn": ElmanRNN, "gru": keras.layers.GRU, "lstm": LSTM}[kind]
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
