"""Tests of the model recipe options: tied softmax and embeddings, word dropout, recurrent dropout
and the initialisers (ModelConfig, EncoderConfig, DecoderConfig).

Tiny untrained models: padding invariance, save/load and the dropouts' train/inference contract
hold for any weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.config import (  # noqa: E402
    ConfigError,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    config_from_dict,
)
from translator.models import MaskedCrossEntropy, build_model, compile_model  # noqa: E402

from .attention_helpers import ATOL, SRC, TGT_IN, TGT_OUT, VOCAB  # noqa: E402

OPTIONS = {
    "tied-softmax": dict(tied_softmax=True),
    "tied-embeddings": dict(tied_embeddings=True),
    "tied-both": dict(tied_softmax=True, tied_embeddings=True),
    "word-dropout": dict(src_word_dropout=0.3, tgt_word_dropout=0.3),
    "recurrent-dropout": dict(recurrent_dropout=0.3),
    "initialisers": dict(
        recurrent_initializer="glorot_uniform_per_gate",
        embedding_initializer="normal",
        embedding_init_scale=0.1,
        rnn_kernel_initializer="glorot_uniform_per_gate",
        forget_bias=2.0,
    ),
}
# Luong without input feeding runs the decoder layers over whole sequences; Bahdanau with input
# feeding runs them cell by cell in a loop: both paths are checked.
ATTENTION = {
    "luong": dict(attention="luong", input_feeding=False),
    "bahdanau": dict(attention="bahdanau", input_feeding=True),
}


def _config(options: dict, attention: str = "luong", cell: str = "lstm") -> ModelConfig:
    options = dict(options)
    rnn = {
        "recurrent_dropout": options.pop("recurrent_dropout", 0.0),
        "recurrent_initializer": options.pop("recurrent_initializer", "orthogonal"),
    }
    return ModelConfig(
        embedding_dim=12,
        encoder=EncoderConfig(cell=cell, units=6, bidirectional=True, **rnn),
        decoder=DecoderConfig(
            cell="gru" if cell == "gru" else "lstm", units=12, **rnn, **ATTENTION[attention]
        ),
        **options,
    )


def _build(options: dict, attention: str = "luong", cell: str = "lstm", seed: int = 7):
    keras.utils.set_random_seed(seed)
    cfg = dataclasses.asdict(_config(options, attention, cell))
    return build_model(cfg, VOCAB, VOCAB, seed=seed)


@pytest.mark.parametrize("attention", list(ATTENTION))
@pytest.mark.parametrize("name", list(OPTIONS))
def test_padding_changes_nothing_and_save_load_is_exact(name, attention, tmp_path):
    model = _build(OPTIONS[name], attention)
    logits = np.asarray(model((SRC, TGT_IN)))
    wider = np.asarray(model((np.pad(SRC, ((0, 0), (0, 3))), np.pad(TGT_IN, ((0, 0), (0, 2))))))
    real = TGT_IN != 0
    np.testing.assert_allclose(wider[:, :4][real], logits[real], atol=ATOL)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(again((SRC, TGT_IN))), logits)
    assert again.config == model.config
    assert len(again.weights) == len(model.weights)


def test_tied_softmax_is_one_variable_with_gradients_from_both_uses():
    tied = _build(OPTIONS["tied-softmax"])
    untied = _build({})
    n_tied, n_untied = len(tied.trainable_variables), len(untied.trainable_variables)
    assert n_tied == n_untied - 1  # the [units, V] kernel is gone; the output bias stays
    embedding = tied.tgt_embedding.embeddings
    assert [v.shape for v in tied.trainable_variables].count((VOCAB, 12)) == 2  # src and tgt
    assert tied.output_projection.trainable_variables[0].shape == (VOCAB,)

    def loss():
        return MaskedCrossEntropy()(TGT_OUT, tied((SRC, TGT_IN)))

    with tf.GradientTape() as tape:
        value = loss()
    grad = tf.convert_to_tensor(tape.gradient(value, embedding)).numpy()
    # A token that is no decoder input is reached through the softmax only.
    absent = sorted(set(range(3, VOCAB)) - set(TGT_IN.ravel().tolist()))[0]
    assert np.abs(grad[absent]).max() > 0
    # For an input token, the gradient is the sum over both uses: it matches the loss's finite
    # difference along a random direction of that row, which the softmax use alone does not.
    token = int(TGT_IN[0, 1])
    direction = np.zeros(embedding.shape, np.float32)
    direction[token] = np.random.default_rng(0).normal(size=12)
    base = embedding.numpy()
    eps = 1e-2
    embedding.assign(base + eps * direction)
    up = float(loss())
    embedding.assign(base - eps * direction)
    down = float(loss())
    embedding.assign(base)
    numeric = (up - down) / (2 * eps)
    analytic = float((grad * direction).sum())
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)
    with tf.GradientTape() as tape:
        logits = tied._logits(
            tf.stop_gradient(
                tied.decoder.sequence(tied.tgt_embedding(TGT_IN), TGT_IN != 0, tied.encode(SRC))
            ),
            False,
        )
        softmax_only = MaskedCrossEntropy()(TGT_OUT, logits)
    g_softmax = tf.convert_to_tensor(tape.gradient(softmax_only, embedding)).numpy()
    assert abs(float((g_softmax * direction).sum()) - numeric) > 10 * abs(analytic - numeric)


def test_tied_embeddings_share_one_matrix_and_need_one_vocabulary():
    model = _build(OPTIONS["tied-embeddings"])
    assert model.src_embedding is model.tgt_embedding
    paths = [v.path for v in model.trainable_variables]
    assert sum("embedding" in p for p in paths) == 1
    cfg = dataclasses.asdict(_config(OPTIONS["tied-embeddings"]))
    with pytest.raises(ConfigError, match=r"model.tied_embeddings.*30.*40.*joint_vocab"):
        build_model(cfg, 30, 40)


@pytest.mark.parametrize("attention", list(ATTENTION))
@pytest.mark.parametrize("name", ["word-dropout", "recurrent-dropout"])
def test_dropouts_are_inactive_at_inference_and_active_in_training(name, attention):
    model = _build(OPTIONS[name], attention)
    plain = _build({}, attention)
    plain.set_weights(model.get_weights())
    inference = np.asarray(model((SRC, TGT_IN)))
    # Word dropout leaves the computation as it is; with recurrent dropout Keras computes the
    # gates with separate products (`implementation=1`), equal up to float rounding.
    atol = 0.0 if name == "word-dropout" else 1e-7
    np.testing.assert_allclose(inference, np.asarray(plain((SRC, TGT_IN))), rtol=0, atol=atol)
    np.testing.assert_allclose(
        inference, np.asarray(plain((SRC, TGT_IN), training=True)), rtol=0, atol=atol
    )
    training = np.asarray(model((SRC, TGT_IN), training=True))
    assert np.abs(training - inference).max() > 1e-3


@pytest.mark.parametrize("attention", list(ATTENTION))
def test_recurrent_dropout_trains_in_compiled_steps(attention):
    model = _build(OPTIONS["recurrent-dropout"], attention)
    compile_model(model, learning_rate=0.01, clip_norm=1.0, label_smoothing=0.0)
    x = (SRC, TGT_IN)
    first = float(model.train_on_batch(x, TGT_OUT)[0])
    for _ in range(20):
        last = float(model.train_on_batch(x, TGT_OUT)[0])
    assert np.isfinite(last) and last < first


def test_word_dropout_zeroes_about_p_of_the_real_tokens():
    p = 0.25
    model = _build(dict(src_word_dropout=p))
    src = np.random.default_rng(1).integers(3, VOCAB, size=(64, 40)).astype("int32")
    src[:, 30:] = 0  # padding
    embedded = model.src_embedding(src)
    dropped = np.asarray(model.src_word_dropout(embedded, training=True))
    zero = np.all(dropped == 0, axis=-1)[:, :30]
    n = zero.size
    assert abs(zero.mean() - p) < 3 * np.sqrt(p * (1 - p) / n)
    kept = ~np.all(dropped == 0, axis=-1)
    np.testing.assert_allclose(dropped[kept], np.asarray(embedded)[kept] / (1 - p), rtol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(model.src_word_dropout(embedded, training=False)), np.asarray(embedded)
    )


def test_initialisers_follow_the_config():
    model = _build(OPTIONS["initialisers"] | {"embedding_init_scale": 0.5})
    emb = model.src_embedding.embeddings.numpy()
    assert 0.45 < emb.std() < 0.55
    cell = model.decoder_layers[0].cell
    units = 12
    np.testing.assert_array_equal(cell.bias.numpy()[units : 2 * units], 2.0)
    assert not np.any(np.delete(cell.bias.numpy(), np.s_[units : 2 * units]))
    for kernel in (cell.kernel.numpy(), cell.recurrent_kernel.numpy()):
        limit = np.sqrt(6 / (kernel.shape[0] + units))  # one gate's [in, units] block
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    default = _build({})
    d_emb = default.src_embedding.embeddings.numpy()
    assert np.abs(d_emb).max() <= 0.05 and d_emb.std() > 0.025  # Keras' U(-0.05, 0.05)
    assert default.decoder_layers[0].cell.unit_forget_bias


def test_models_saved_without_the_new_keys_load_with_todays_behaviour():
    cfg = dataclasses.asdict(ModelConfig(embedding_dim=12))
    for key in (
        "tied_softmax",
        "tied_embeddings",
        "src_word_dropout",
        "tgt_word_dropout",
        "embedding_initializer",
        "embedding_init_scale",
        "rnn_kernel_initializer",
        "forget_bias",
    ):
        del cfg[key]
    del cfg["encoder"]["recurrent_dropout"], cfg["decoder"]["recurrent_dropout"]
    del cfg["decoder"]["recurrent_initializer"]
    model = build_model(cfg, VOCAB, VOCAB, seed=1)
    assert model.config == ModelConfig(embedding_dim=12)
    assert isinstance(model.output_projection, keras.layers.Dense)
    assert model.src_embedding is not model.tgt_embedding


@pytest.mark.parametrize(
    "model_section, message",
    [
        (
            {"tied_softmax": True, "embedding_dim": 128},
            r"model.tied_softmax: .*model.embedding_dim == model.decoder.units",
        ),
        ({"src_word_dropout": 1.0}, r"model.src_word_dropout: must be in \[0, 1\)"),
        ({"tgt_word_dropout": -0.1}, r"model.tgt_word_dropout: must be in \[0, 1\)"),
        ({"encoder": {"recurrent_dropout": 1.5}}, r"model.encoder.recurrent_dropout: must be"),
        ({"decoder": {"recurrent_dropout": -1}}, r"model.decoder.recurrent_dropout: must be"),
        (
            {"embedding_initializer": "zeros"},
            r"model.embedding_initializer: invalid value 'zeros'; valid choices: uniform, "
            r"normal, glorot_uniform",
        ),
        ({"embedding_init_scale": 0}, r"model.embedding_init_scale: must be a positive number"),
        (
            {"rnn_kernel_initializer": "he"},
            r"model.rnn_kernel_initializer: invalid value 'he'; valid choices: glorot_uniform, "
            r"glorot_uniform_per_gate",
        ),
        (
            {"decoder": {"recurrent_initializer": "identity"}},
            r"model.decoder.recurrent_initializer: invalid value 'identity'; valid choices: "
            r"orthogonal, glorot_uniform, glorot_uniform_per_gate",
        ),
        ({"forget_bias": float("inf")}, r"model.forget_bias: must be a finite number"),
        ({"tied_embeddings": "yes"}, r"model.tied_embeddings: expected true or false"),
    ],
)
def test_bad_values_are_config_errors(model_section, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"model": model_section})
