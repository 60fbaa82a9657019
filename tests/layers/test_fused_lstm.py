"""LSTM against keras.layers.LSTM: the same outputs, the same gradients, padding-proof."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.layers.lstm import LSTM

from .reference import make_batch, randomize

U = 5


def _pair(units: int = U, features: int = 4, **kwargs):
    ref = keras.layers.LSTM(units, return_sequences=True, return_state=True, **kwargs)
    new = LSTM(units, return_sequences=True, return_state=True, **kwargs)
    ref.build((None, None, features))
    new.build((None, None, features))
    randomize(ref)
    new.set_weights(ref.get_weights())
    return ref, new


def _run(layer, x, mask, h0, c0, upstream, training=True):
    """Outputs, and gradients of sum(outputs * upstream) + states w.r.t. inputs and weights."""
    x, h0, c0 = (tf.constant(v) for v in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        seq, h, c = layer(x, initial_state=[h0, c0], mask=tf.constant(mask), training=training)
        seq32, h32, c32 = (tf.cast(v, tf.float32) for v in (seq, h, c))
        loss = (
            tf.reduce_sum(seq32 * upstream * mask[..., None])
            + tf.reduce_sum(h32 * 0.3)
            - tf.reduce_sum(c32 * 0.7)
        )
    grads = tape.gradient(loss, [x, h0, c0, *layer.trainable_weights])
    return [np.asarray(tf.cast(v, tf.float32)) for v in (seq32, h32, c32)], [
        np.asarray(tf.cast(g, tf.float32)) for g in grads
    ]


def _inputs(seed=0, lengths=(6, 3, 1), time_steps=6):
    x, mask = make_batch(seed, lengths=np.array(lengths), time_steps=time_steps)
    rng = np.random.default_rng(seed + 1)
    h0, c0 = (rng.normal(size=(len(lengths), U)).astype("float32") for _ in range(2))
    upstream = rng.normal(size=(len(lengths), time_steps, U)).astype("float32")
    return x, mask, h0, c0, upstream


def test_outputs_equal_keras_lstm_bit_for_bit_and_gradients_match():
    ref, new = _pair()
    args = _inputs()
    (out_r, grads_r), (out_n, grads_n) = _run(ref, *args), _run(new, *args)
    mask = args[1]
    np.testing.assert_array_equal(out_r[0] * mask[..., None], out_n[0] * mask[..., None])
    np.testing.assert_array_equal(out_r[1], out_n[1])
    np.testing.assert_array_equal(out_r[2], out_n[2])
    names = ["x", "h0", "c0", "kernel", "recurrent_kernel", "bias"]
    for name, g_r, g_n in zip(names, grads_r, grads_n, strict=True):
        np.testing.assert_allclose(g_n, g_r, atol=1e-5, rtol=1e-5, err_msg=name)


def test_inference_and_compiled_call_equal_keras():
    ref, new = _pair()
    x, mask, h0, c0, _ = _inputs(seed=3)

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None], tf.bool)]
    )
    def compiled(x, mask):
        return new(x, initial_state=[tf.constant(h0), tf.constant(c0)], mask=mask)

    expected = ref(x, initial_state=[h0, c0], mask=mask)
    for got in (new(x, initial_state=[h0, c0], mask=mask), compiled(x, mask)):
        for e, g in zip(expected, got, strict=True):
            np.testing.assert_array_equal(np.asarray(e)[:, -1], np.asarray(g)[:, -1])


def _assert_padding_changes_nothing(layer, padded_layer, extra, seed, inputs):
    """Run `layer` on `inputs` and `padded_layer` on them with `extra` more padded steps (filled
    with noise drawn with `seed`); outputs on the real steps, final states and every gradient
    must be the same, and the padding gets no gradient."""
    x, mask, h0, c0, upstream = inputs
    out, grads = _run(layer, x, mask, h0, c0, upstream)
    noise = np.random.default_rng(seed).normal(size=(x.shape[0], extra, x.shape[2]))
    x_pad = np.concatenate([x, noise.astype("float32")], axis=1)
    mask_pad = np.concatenate([mask, np.zeros((x.shape[0], extra), bool)], axis=1)
    up_pad = np.concatenate([upstream, np.ones((x.shape[0], extra, U), "float32")], axis=1)
    out_p, grads_p = _run(padded_layer, x_pad, mask_pad, h0, c0, up_pad)
    T = x.shape[1]
    np.testing.assert_allclose(out_p[0][:, :T] * mask[..., None], out[0] * mask[..., None])
    np.testing.assert_allclose(out_p[1], out[1])
    np.testing.assert_allclose(out_p[2], out[2])
    np.testing.assert_allclose(grads_p[0][:, :T], grads[0], atol=1e-6)
    assert not grads_p[0][:, T:].any()  # padding gets no gradient
    for g_p, g in zip(grads_p[1:], grads[1:], strict=True):
        np.testing.assert_allclose(g_p, g, atol=1e-6)


def test_padding_changes_no_output_and_no_gradient():
    _, new = _pair()
    _assert_padding_changes_nothing(new, new, extra=4, seed=9, inputs=_inputs(seed=5))


def test_mixed_bfloat16_is_close_to_float32():
    ref, new = _pair()
    args = _inputs(seed=7)
    out_32, grads_32 = _run(ref, *args)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        _, new_bf16 = _pair()
        new_bf16.set_weights(ref.get_weights())
        out_16, grads_16 = _run(new_bf16, *args)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    mask = args[1][..., None]
    np.testing.assert_allclose(out_16[0] * mask, out_32[0] * mask, atol=3e-2)
    for g_16, g_32 in zip(grads_16, grads_32, strict=True):
        scale = np.abs(g_32).max()
        np.testing.assert_allclose(g_16, g_32, atol=3e-2 * scale)


@pytest.mark.parametrize(
    "rates",
    [{"recurrent_dropout": 0.3}, {"recurrent_dropout": 0.3, "dropout": 0.2}, {"dropout": 0.4}],
)
def test_dropout_in_training_equals_keras_with_the_same_masks(rates, monkeypatch):
    """Recurrent dropout (Keras' `implementation=1`: one mask per gate on `h_{t-1}`, and with
    `dropout` one per gate on the inputs) runs in the fused loops: with the same seed the layers
    draw the same masks, and outputs and gradients are Keras' own."""
    from translator.layers import lstm

    calls = []
    fused = lstm.lstm_recurrence
    monkeypatch.setattr(lstm, "lstm_recurrence", lambda *a, **k: calls.append(k) or fused(*a, **k))
    ref, new = _pair(seed=21, **rates)
    args = _inputs(seed=13)
    (out_r, grads_r), (out_n, grads_n) = _run(ref, *args), _run(new, *args)
    assert len(calls) == 1  # ours ran its own loops
    assert (calls[0]["recurrent_masks"] is None) == ("recurrent_dropout" not in rates)
    mask = args[1][..., None]
    np.testing.assert_allclose(out_n[0] * mask, out_r[0] * mask, atol=1e-6)
    np.testing.assert_allclose(out_n[1], out_r[1], atol=1e-6)
    np.testing.assert_allclose(out_n[2], out_r[2], atol=1e-6)
    names = ["x", "h0", "c0", "kernel", "recurrent_kernel", "bias"]
    for name, g_r, g_n in zip(names, grads_r, grads_n, strict=True):
        np.testing.assert_allclose(g_n, g_r, atol=1e-5, rtol=1e-5, err_msg=name)
    out_inf, _ = _run(new, *args, training=False)
    assert np.abs(out_inf[1] - out_n[1]).max() > 1e-3  # the masks did something


def test_recurrent_dropout_padding_changes_no_output_and_no_gradient():
    """Masks are drawn per sequence ([B, U]), so extra padding draws the same ones."""
    _, new = _pair(seed=5, recurrent_dropout=0.3)
    _, new_pad = _pair(seed=5, recurrent_dropout=0.3)
    new_pad.set_weights(new.get_weights())
    _assert_padding_changes_nothing(new, new_pad, extra=3, seed=2, inputs=_inputs(seed=17))


def test_go_backwards_runs_keras_loop():
    ref, new = _pair(go_backwards=True)
    x, mask, h0, c0, upstream = _inputs(seed=11)
    out_r, _ = _run(ref, x, mask, h0, c0, upstream, training=False)
    out_n, grads_n = _run(new, x, mask, h0, c0, upstream, training=True)
    out_n_inf, _ = _run(new, x, mask, h0, c0, upstream, training=False)
    np.testing.assert_array_equal(out_r[1], out_n_inf[1])
    assert all(np.isfinite(g).all() for g in grads_n)


def test_saved_and_loaded_with_its_class(tmp_path):
    _, new = _pair()
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, new(inputs)[0])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, _, _, _, _ = _inputs()
    assert isinstance(loaded.layers[-1], LSTM)
    np.testing.assert_array_equal(model(x), loaded(x))
