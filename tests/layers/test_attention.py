"""Tests for translator.layers.attention: the Bahdanau and Luong attention layers."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from translator.layers.attention import BahdanauAttention, LuongAttention  # noqa: E402

from ..models.attention_helpers import ATOL, MECHANISMS, SRC, TGT_IN, make_model  # noqa: E402

# --------------------------------------------------------------------------- the layers


@pytest.mark.parametrize("kind,score", MECHANISMS, ids=["bahdanau", "luong-general", "luong-dot"])
def test_weights_are_a_distribution_over_real_tokens_only(kind, score):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5, 12)).astype("float32")
    query = rng.normal(size=(3, 12)).astype("float32")
    mask = SRC != 0
    layer = BahdanauAttention(10) if kind == "bahdanau" else LuongAttention(score)
    keys = None
    if kind == "bahdanau" or score == "general":
        layer.build((None, 12), (None, None, 12))
        keys = layer.project_keys(values)
    context, weights = layer(query, values, keys=keys, mask=mask)
    weights = weights.numpy()
    assert context.shape == (3, 12) and weights.shape == (3, 5)
    assert (weights >= 0).all()
    assert (weights[~mask] == 0).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(context, np.einsum("bs,bse->be", weights, values), atol=1e-5)

    # Through the model: exactly 0 at source padding, rows sum to 1 at real target steps.
    model = make_model(attention=kind, score=score)
    att = model.attention_weights(SRC, TGT_IN).numpy()  # [B, T, S]
    assert att.shape == (3, 4, 5) and (att >= 0).all()
    assert (att[np.broadcast_to(~mask[:, None, :], att.shape)] == 0).all()
    np.testing.assert_allclose(att.sum(-1)[TGT_IN != 0], 1.0, rtol=1e-6)


def test_luong_dot_needs_equal_sizes():
    with pytest.raises(ValueError, match="same size"):
        LuongAttention("dot").build((None, 8), (None, None, 12))
    with pytest.raises(ValueError, match="general, dot"):
        LuongAttention("cosine")


@pytest.mark.parametrize("score", ["general", "dot"])
def test_luong_sequence_query_equals_one_query_at_a_time(score):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 5, 12)).astype("float32")
    queries = rng.normal(size=(3, 4, 12)).astype("float32")
    mask = SRC != 0
    layer = LuongAttention(score)
    layer.build((None, 12), (None, None, 12))
    context, weights = layer(queries, values, mask=mask)
    assert context.shape == (3, 4, 12) and weights.shape == (3, 4, 5)
    for t in range(4):
        c_t, w_t = layer(queries[:, t], values, mask=mask)
        np.testing.assert_allclose(context[:, t], c_t, atol=ATOL)
        np.testing.assert_allclose(weights[:, t], w_t, atol=ATOL)
    assert (weights.numpy()[np.broadcast_to(~mask[:, None, :], (3, 4, 5))] == 0).all()
