"""Attention over the encoder outputs for the recurrent decoder: Bahdanau (additive) and Luong
(multiplicative, `general` or `dot`).

Both layers split the work the same way, so that the decoder pays for the source side once:

- `project_keys(values)` turns the encoder outputs `[B, S, E]` into keys `[B, S, A]` (done once per
  batch, by the encoder);
- `layer(query, values, keys, mask)` scores one decoder query `[B, Q]` against those keys, takes a
  softmax over the real source tokens and returns the context vector `[B, E]` and the weights
  `[B, S]`.

Padding (`mask == False`) gets a weight of exactly 0; the weights of a row sum to 1 over its real
tokens. The layers compute scores and contexts only; the decoder combines the context with its
state into the attentional vector (see `translator.models.decoder`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from translator.layers import ATTENTIONS, LUONG_SCORES


def masked_softmax(scores: Any, mask: Any) -> Any:
    """Softmax of `scores [B, S]` over the positions where `mask [B, S]` is True.

    Masked positions get exactly 0 (their score is replaced by a large negative number whose
    exponential underflows to 0), so extra padding changes nothing. A row without any real
    position gets uniform weights instead of NaN.
    """
    dtype = keras.backend.standardize_dtype(scores.dtype)
    if dtype in ("float16", "bfloat16"):  # mixed precision: the softmax runs in float32
        return ops.cast(masked_softmax(ops.cast(scores, "float32"), mask), dtype)
    if mask is None:
        return ops.softmax(scores, axis=-1)
    large_negative = -1e9 if dtype in ("float32", "float64") else -3e4
    scores = ops.where(ops.cast(mask, "bool"), scores, ops.cast(large_negative, scores.dtype))
    return ops.softmax(scores, axis=-1)


def weighted_sum(weights: Any, values: Any) -> Any:
    """Context vectors `[B, E]` from weights `[B, S]` and values `[B, S, E]`."""
    return ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), values), 1)


@keras.saving.register_keras_serializable(package="translator")
class BahdanauAttention(keras.layers.Layer):
    """Additive attention (Bahdanau et al., 2015): `score(q, e_j) = v^T tanh(W_k e_j + W_q q)`.

    Weights: `key_kernel` (`W_k`) `[E, units]`, `query_kernel` (`W_q`) `[Q, units]`, `energy`
    (`v`) `[units]`; no biases (as JoeyNMT).

    Args:
        units: size of the hidden layer of the scoring network (JoeyNMT: the decoder size).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `[B, Q]`, the decoder state the source is scored against.
        values: `[B, S, E]`, the encoder outputs.
        keys: `[B, S, units]` from :meth:`project_keys` (computed from `values` when omitted).
        mask: optional bool `[B, S]`, True at real source tokens.

    Returns:
        `(context [B, E], weights [B, S])`.

    Example:

    ```python
    att = BahdanauAttention(16)
    keys = att.project_keys(values)  # values: (2, 7, 32) -> keys: (2, 7, 16)
    context, weights = att(query, values, keys=keys, mask=mask)  # (2, 32), (2, 7)
    ```
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.supports_masking = True  # the source mask is an explicit argument; outputs have none

    def build(self, query_shape: tuple, values_shape: tuple) -> None:
        """Creates `key_kernel [E, units]`, `query_kernel [Q, units]` and `energy [units]`."""
        self.key_kernel = self.add_weight(
            shape=(values_shape[-1], self.units), name="key_kernel", initializer="glorot_uniform"
        )
        self.query_kernel = self.add_weight(
            shape=(query_shape[-1], self.units), name="query_kernel", initializer="glorot_uniform"
        )
        self.energy = self.add_weight(
            shape=(self.units,), name="energy", initializer="glorot_uniform"
        )
        self.built = True

    def project_keys(self, values: Any) -> Any:
        """`W_k e_j` for all positions: values `[B, S, E]` -> keys `[B, S, units]`."""
        return ops.matmul(values, self.key_kernel)

    def call(self, query: Any, values: Any, keys: Any = None, mask: Any = None) -> tuple[Any, Any]:
        if keys is None:
            keys = self.project_keys(values)
        projected_query = ops.expand_dims(ops.matmul(query, self.query_kernel), 1)  # [B, 1, A]
        hidden = ops.tanh(keys + projected_query)  # [B, S, A]
        scores = ops.squeeze(ops.matmul(hidden, ops.expand_dims(self.energy, -1)), -1)  # [B, S]
        weights = masked_softmax(scores, mask)
        return weighted_sum(weights, values), weights

    def compute_mask(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="translator")
class LuongAttention(keras.layers.Layer):
    """Multiplicative attention (Luong et al., 2015).

    - `score="general"`: `score(q, e_j) = q^T W e_j`, with `kernel` (`W^T`) `[E, Q]`, no bias;
    - `score="dot"`: `score(q, e_j) = q^T e_j`, no weights; needs `E == Q`.

    Args:
        score: `"general"` (default) or `"dot"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        query: `[B, Q]`, the decoder state the source is scored against, or `[B, T, Q]`, the
            states of all target positions at once.
        values: `[B, S, E]`, the encoder outputs.
        keys: `[B, S, Q]` from :meth:`project_keys` (computed from `values` when omitted).
        mask: optional bool `[B, S]`, True at real source tokens.

    Returns:
        `(context [B, E], weights [B, S])`, or `([B, T, E], [B, T, S])` for a `[B, T, Q]` query.

    Example:

    ```python
    att = LuongAttention("general")
    keys = att.project_keys(values)  # values: (2, 7, 32) -> keys: (2, 7, Q)
    context, weights = att(query, values, keys=keys, mask=mask)  # (2, 32), (2, 7)
    ```
    """

    def __init__(self, score: str = "general", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if score not in LUONG_SCORES:
            raise ValueError(
                f"invalid Luong score {score!r}; valid choices: {', '.join(LUONG_SCORES)}"
            )
        self.score = score
        self.supports_masking = True  # the source mask is an explicit argument; outputs have none

    def build(self, query_shape: tuple, values_shape: tuple) -> None:
        """Creates `kernel [E, Q]` for `general`; checks `E == Q` for `dot`."""
        query_dim, values_dim = query_shape[-1], values_shape[-1]
        if self.score == "general":
            self.kernel = self.add_weight(
                shape=(values_dim, query_dim), name="kernel", initializer="glorot_uniform"
            )
        elif query_dim is not None and values_dim is not None and query_dim != values_dim:
            raise ValueError(
                f"Luong 'dot' attention needs queries and values of the same size; got query "
                f"size {query_dim} and values (encoder output) size {values_dim}; use 'general'"
            )
        self.built = True

    def project_keys(self, values: Any) -> Any:
        """`W e_j` for all positions (`general`), or the values themselves (`dot`): `[B, S, Q]`."""
        if self.score == "dot":
            return values
        return ops.matmul(values, self.kernel)

    def call(self, query: Any, values: Any, keys: Any = None, mask: Any = None) -> tuple[Any, Any]:
        if keys is None:
            keys = self.project_keys(values)
        if len(query.shape) == 3:
            # All queries of a sequence at once (teacher forcing without input feeding):
            # query [B, T, Q] -> context [B, T, E], weights [B, T, S].
            scores = ops.matmul(query, ops.transpose(keys, (0, 2, 1)))
            if mask is not None:
                mask = ops.expand_dims(mask, 1)
            weights = masked_softmax(scores, mask)
            return ops.matmul(weights, values), weights
        scores = ops.squeeze(ops.matmul(keys, ops.expand_dims(query, -1)), -1)  # [B, S]
        weights = masked_softmax(scores, mask)
        return weighted_sum(weights, values), weights

    def compute_mask(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "score": self.score}


def make_attention(
    kind: str, units: int, score: str = "general", name: str = "attention"
) -> keras.layers.Layer | None:
    """The attention layer for `model.decoder.attention` (`None` for `"none"`).

    Args:
        kind: `"none"`, `"bahdanau"` or `"luong"`.
        units: decoder units (the size of Bahdanau's scoring layer).
        score: Luong score, `"general"` or `"dot"` (ignored for Bahdanau).
        name: layer name.
    """
    if kind == "none":
        return None
    if kind == "bahdanau":
        return BahdanauAttention(units, name=name)
    if kind == "luong":
        return LuongAttention(score, name=name)
    raise ValueError(f"unknown attention {kind!r}; valid choices: {', '.join(ATTENTIONS)}")
