"""Tests for translator.layers.embedding and the initialisers of translator.layers.rnn."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.layers.embedding import (  # noqa: E402
    TiedOutputProjection,
    embedding_initializer,
    word_dropout,
)
from translator.layers.rnn import ForgetGateBias, GlorotUniformPerGate, make_rnn_layer  # noqa: E402


def test_tied_output_projection_is_x_times_embeddings_transposed_plus_bias(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 4)).astype("float32")
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    proj = TiedOutputProjection(7)
    proj.build((None, 4))
    proj.bias.assign(np.arange(7, dtype="float32"))
    np.testing.assert_allclose(np.asarray(proj(x, emb)), x @ emb.T + np.arange(7), rtol=1e-5)
    assert [w.shape for w in proj.weights] == [(7,)]
    again = TiedOutputProjection.from_config(proj.get_config())
    assert again.vocab_size == 7


@pytest.mark.parametrize("rows", [1, 5, 15, 16, 64, 320])
def test_tied_projection_with_its_kernel_given_gives_the_same_bits(rows):
    """`kernel=kernel_of(E)` (what a decoding loop computes once) gives exactly the logits of the
    product with `E` in a compiled function (where TensorFlow runs `x E^T` as a product with a
    transposed operand), at the vocabulary and size of the flagship model."""
    rng = np.random.default_rng(rows)
    emb = tf.Variable(rng.normal(size=(4000, 256)).astype("float32"))  # a constant gets folded
    x = tf.constant(rng.normal(size=(rows, 256)).astype("float32"))
    proj = TiedOutputProjection(4000)
    proj.build((None, 256))
    proj.bias.assign(rng.normal(size=4000).astype("float32"))
    per_call = tf.function(lambda x: proj(x, emb))
    given = tf.function(lambda x: proj(x, emb, kernel=TiedOutputProjection.kernel_of(emb, x.dtype)))
    np.testing.assert_array_equal(np.asarray(given(x)), np.asarray(per_call(x)))
    np.testing.assert_allclose(
        np.asarray(given(x)), x.numpy() @ emb.numpy().T + proj.bias.numpy(), rtol=1e-4, atol=1e-3
    )


def test_word_dropout_drops_whole_tokens_in_training_only():
    drop = word_dropout(0.5, seed=3)
    x = np.ones((50, 40, 6), "float32")
    y = np.asarray(drop(x, training=True))
    per_token = np.unique(y.reshape(-1, 6), axis=0)
    assert {tuple(r) for r in per_token} == {(0.0,) * 6, (2.0,) * 6}
    assert abs((y[..., 0] == 0).mean() - 0.5) < 3 * np.sqrt(0.25 / 2000)
    np.testing.assert_array_equal(np.asarray(drop(x, training=False)), x)


@pytest.mark.parametrize(
    "kind, scale, check",
    [
        ("uniform", 0.05, lambda w: np.abs(w).max() <= 0.05 and w.std() > 0.025),
        ("uniform", 0.2, lambda w: np.abs(w).max() <= 0.2 and w.std() > 0.1),
        ("normal", 0.01, lambda w: 0.009 < w.std() < 0.011),
        ("glorot_uniform", 1.0, lambda w: np.abs(w).max() <= np.sqrt(6 / (500 + 64))),
    ],
)
def test_embedding_initializers(kind, scale, check):
    init = keras.initializers.get(embedding_initializer(kind, scale))
    assert check(np.asarray(init((500, 64))))
    with pytest.raises(ValueError, match="valid choices: uniform, normal, glorot_uniform"):
        embedding_initializer("zeros")


def test_glorot_per_gate_uses_one_gates_fans():
    w = np.asarray(GlorotUniformPerGate(4, seed=1)((100, 4 * 50)))
    limit = np.sqrt(6 / (100 + 50))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert GlorotUniformPerGate.from_config(GlorotUniformPerGate(3).get_config()).gates == 3


def test_forget_gate_bias_of_one_equals_keras_unit_forget_bias(tmp_path):
    keras_bias = make_rnn_layer("lstm", 5)
    ours = make_rnn_layer("lstm", 5, forget_bias=2.0)
    for layer in (keras_bias, ours):
        layer.build((None, None, 3))
    expected = np.concatenate([np.zeros(5), np.ones(5), np.zeros(10)])
    np.testing.assert_array_equal(keras_bias.cell.bias.numpy(), expected)
    np.testing.assert_array_equal(np.asarray(ForgetGateBias(1.0)((20,))), expected)
    np.testing.assert_array_equal(ours.cell.bias.numpy(), 2 * expected)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    model = keras.Sequential([keras.Input((4, 3)), ours])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(again(x)[0]), np.asarray(model(x)[0]))


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_dropout_reaches_every_kind(kind):
    layer = make_rnn_layer(
        kind, 4, recurrent_dropout=0.3, kernel_initializer="glorot_uniform_per_gate"
    )
    assert layer.cell.recurrent_dropout == 0.3
    assert isinstance(layer.cell.kernel_initializer, GlorotUniformPerGate)
    with pytest.raises(ValueError, match="valid choices: glorot_uniform, glorot_uniform_per_gate"):
        make_rnn_layer(kind, 4, kernel_initializer="he_normal")
