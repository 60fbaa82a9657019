"""SyncClippedAdam's fused update against Adam's equations and against Keras' own Adam."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.models.optimizers import SyncClippedAdam

SHAPES = [(40, 8), (8, 32), (32,), (7, 5)]
LR, CLIP, STEPS = 0.004, 1.0, 6


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [[rng.normal(size=s).astype("float32") for s in SHAPES] for _ in range(STEPS)]
    return init, grads


def _train(optimizer, init, grads, sparse_first=False):
    """Apply `grads` step by step; with `sparse_first` the first variable's gradient comes as
    `tf.IndexedSlices` of some of its rows (as an embedding lookup's does)."""
    variables = [keras.Variable(x) for x in init]

    @tf.function
    def step(gs):
        optimizer.apply(gs, variables)

    for g in grads:
        gs = [tf.constant(x) for x in g]
        if sparse_first:
            rows = tf.constant([1, 3, 3, 17])
            gs[0] = tf.IndexedSlices(tf.gather(gs[0], rows), rows, tf.constant(SHAPES[0]))
        step(gs)
    states = [m.numpy() for m in optimizer._momentums] + [v.numpy() for v in optimizer._velocities]
    return [v.numpy() for v in variables], states


def _numpy_adam(init, grads, b1=0.9, b2=0.999, eps=1e-7):
    """Adam (Kingma & Ba, with Keras' epsilon placement) and clipping by global norm, in float64."""
    params = [x.astype(np.float64) for x in init]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, g in enumerate(grads, start=1):
        g = [x.astype(np.float64) for x in g]
        norm = np.sqrt(sum((x * x).sum() for x in g))
        g = [x * CLIP / max(norm, CLIP) for x in g]
        alpha = LR * np.sqrt(1 - b2**t) / (1 - b1**t)
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            params[i] = params[i] - alpha * m[i] / (np.sqrt(v[i]) + eps)
    return params, m + v


def test_the_fused_update_follows_adams_equations():
    init, grads = _problem()
    got, got_state = _train(SyncClippedAdam(learning_rate=LR, global_clipnorm=CLIP), init, grads)
    want, want_state = _numpy_adam(init, grads)
    # float32 Adam computes 1 - beta2 and 1 - beta2^t with relative errors of about 1e-5, so the
    # variables are compared to within 1e-4 of the total update (LR * STEPS)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * LR * STEPS)
    for a, b in zip(got_state, want_state, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    # the update moved every variable (a no-op update would fail the comparison above too)
    assert all(not np.allclose(a, b) for a, b in zip(got, init, strict=True))


@pytest.mark.parametrize("sparse_first", [False, True])
def test_the_fused_update_matches_keras_adam_up_to_rounding(sparse_first):
    init, grads = _problem(1)
    ours = _train(SyncClippedAdam(LR, global_clipnorm=CLIP), init, grads, sparse_first)
    keras_adam = _train(keras.optimizers.Adam(LR, global_clipnorm=CLIP), init, grads, sparse_first)
    for a, b in zip(ours[0], keras_adam[0], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * LR * STEPS)
    for a, b in zip(ours[1], keras_adam[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_amsgrad_keeps_keras_update():
    init, grads = _problem(2)
    ours = _train(SyncClippedAdam(LR, amsgrad=True, global_clipnorm=CLIP), init, grads)
    keras_adam = _train(keras.optimizers.Adam(LR, amsgrad=True, global_clipnorm=CLIP), init, grads)
    for a, b in zip(ours[0] + ours[1], keras_adam[0] + keras_adam[1], strict=True):
        np.testing.assert_array_equal(a, b)
