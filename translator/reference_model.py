"""A plain Keras reference for `translator bench --reference`: the run's model as a Keras user
would write it, from stock layers only.

:func:`build_reference_model` makes a functional model of the same shape as the run's `Seq2Seq`:
`keras.layers.Embedding(mask_zero=True)`, the encoder as stacked `keras.layers.LSTM` / `GRU` /
`SimpleRNN` (in `keras.layers.Bidirectional` for a bidirectional encoder), a Dense bridge from the
top layer's final states to the decoder's initial states, a decoder of `LSTM`/`GRU` layers over
the whole target sequence, attention with `keras.layers.Attention` (Luong; a Dense on the query
for `general`) or `keras.layers.AdditiveAttention` (Bahdanau, with Dense key and query
projections), the attentional vector `Dense(units, tanh)` of the concatenation, and `Dense(V)`.
Stock layers run the decoder over the whole sequence, so they cannot feed the context or the
attentional vector back into the recurrence: the reference attends with the decoder's outputs
(as Luong without input feeding does), its first decoder layer reads the embeddings only, and it
has no weight tying (`Dense(V)` has its own kernel). Its parameter count is therefore a little
lower than ours with input feeding or Bahdanau attention, and `V * U` higher with
`tied_softmax`; :func:`reference_flop_counts` counts its own FLOPs.

Training: Adam with the run's learning rate and global gradient-norm clipping (as the run's own
optimizer), and `SparseCategoricalCrossentropy(from_logits=True)` with the target padding weighted
0 (:func:`reference_sample_weight`); no label smoothing, no metrics.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from translator.config import ModelConfig
from translator.flops import (
    FlopCounts,
    bridge_flops_per_sentence,
    decoder_rnn_flops_per_token,
    dense_flops,
    encoder_flops_per_token,
)
from translator.layers import STATES_PER_CELL

_RNN = {"rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}


def _merge(forward: Any, backward: Any, mode: str) -> Any:
    if mode == "concat":
        return keras.layers.Concatenate()([forward, backward])
    if mode == "sum":
        return keras.layers.Add()([forward, backward])
    return keras.layers.Average()([forward, backward])


def _dropout(x: Any, rate: float, seed: int | None, noise_shape: Any = None) -> Any:
    return keras.layers.Dropout(rate, noise_shape=noise_shape, seed=seed)(x) if rate else x


def build_reference_model(
    model_config: ModelConfig,
    src_vocab_size: int,
    tgt_vocab_size: int,
    seed: int | None = None,
) -> keras.Model:
    """The plain Keras functional model of the shape of `model_config` (see the module docstring),
    built under the current dtype policy.

    Args:
        model_config: the run's `model` config section.
        src_vocab_size, tgt_vocab_size: vocabulary sizes (id 0 is padding).
        seed: dropout seed.

    Returns:
        A `keras.Model` called on `(src_ids [B, S], tgt_in_ids [B, T])` (int, right-padded with 0)
        returning logits `[B, T, tgt_vocab_size]`.
    """
    cfg, enc, dec = model_config, model_config.encoder, model_config.decoder
    src = keras.Input((None,), dtype="int32", name="src_ids")
    tgt = keras.Input((None,), dtype="int32", name="tgt_in_ids")
    src_embedding = keras.layers.Embedding(
        src_vocab_size, cfg.embedding_dim, mask_zero=True, name="src_embedding"
    )
    tgt_embedding = (
        src_embedding
        if cfg.tied_embeddings and src_vocab_size == tgt_vocab_size
        else keras.layers.Embedding(
            tgt_vocab_size, cfg.embedding_dim, mask_zero=True, name="tgt_embedding"
        )
    )

    # Encoder: the top layer's outputs [B, S, E] and each layer's (merged) final states.
    x = _dropout(src_embedding(src), cfg.src_word_dropout, seed, (None, None, 1))
    x = _dropout(x, cfg.embedding_dropout, seed)
    n_enc = STATES_PER_CELL[enc.cell]
    layer_states = []
    for i in range(enc.num_layers):
        if i > 0:
            x = _dropout(x, enc.dropout, seed)
        options: dict[str, Any] = {"return_sequences": True, "return_state": True}
        if enc.cell == "rnn":
            options["activation"] = enc.activation
        if enc.recurrent_dropout:
            options["recurrent_dropout"] = enc.recurrent_dropout
        layer = _RNN[enc.cell](enc.units, name=f"encoder_{i}", **options)
        if enc.bidirectional:
            x, *states = keras.layers.Bidirectional(layer, merge_mode=enc.merge)(x)
            states = [
                _merge(f, b, enc.merge) for f, b in zip(states[:n_enc], states[n_enc:], strict=True)
            ]
        else:
            x, *states = layer(x)
        layer_states.append(states)
    encoder_outputs = x

    # Bridge: as ours, from the top layer's final states (an LSTM's c from a GRU's h).
    n_dec = STATES_PER_CELL[dec.cell]
    top = layer_states[-1]
    initial: list[Any] = []
    for i in range(dec.num_layers):
        if cfg.init_hidden == "zero":
            initial.append(None)
        elif cfg.init_hidden == "last":
            states = layer_states[i] if len(layer_states) == dec.num_layers else top
            initial.append(states[:n_dec])
        else:
            initial.append(
                [
                    keras.layers.Dense(dec.units, activation="tanh", name=f"bridge_{i}_{k}")(
                        top[k] if k < len(top) else top[0]
                    )
                    for k in range(n_dec)
                ]
            )

    # Decoder over the whole target sequence, then attention with its outputs as queries.
    y = _dropout(tgt_embedding(tgt), cfg.tgt_word_dropout, seed, (None, None, 1))
    y = _dropout(y, cfg.embedding_dropout, seed)
    for i in range(dec.num_layers):
        if i > 0:
            y = _dropout(y, dec.dropout, seed)
        options = {"return_sequences": True}
        if dec.recurrent_dropout:
            options["recurrent_dropout"] = dec.recurrent_dropout
        y = _RNN[dec.cell](dec.units, name=f"decoder_{i}", **options)(y, initial_state=initial[i])
    if dec.attention == "luong":
        query = y
        if dec.attention_score == "general":
            size = enc.output_size
            query = keras.layers.Dense(size, use_bias=False, name="attention_query")(y)
        context = keras.layers.Attention(name="attention")([query, encoder_outputs])
        y = keras.layers.Concatenate()([context, y])
    elif dec.attention == "bahdanau":
        query = keras.layers.Dense(dec.units, use_bias=False, name="attention_query")(y)
        keys = keras.layers.Dense(dec.units, use_bias=False, name="attention_keys")(encoder_outputs)
        context = keras.layers.AdditiveAttention(name="attention")([query, encoder_outputs, keys])
        y = keras.layers.Concatenate()([y, context])
    if dec.attention != "none":
        y = keras.layers.Dense(dec.units, activation="tanh", name="attention_vector")(y)
    y = _dropout(y, cfg.output_dropout, seed)
    logits = keras.layers.Dense(tgt_vocab_size, name="output_projection")(y)
    return keras.Model([src, tgt], logits, name="keras_reference")


def compile_reference_model(model: keras.Model, learning_rate: float, clip_norm: float) -> None:
    """Adam (`learning_rate`, gradients clipped to global norm `clip_norm`; 0: no clipping) and
    sparse categorical cross-entropy from logits; the padding gets weight 0 through the sample
    weights of :func:`reference_sample_weight`."""
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=learning_rate, global_clipnorm=clip_norm or None
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def reference_sample_weight(tgt_out_ids: np.ndarray) -> np.ndarray:
    """Sample weights [B, T] for `train_on_batch`: 1 at real target tokens, 0 at padding."""
    return (np.asarray(tgt_out_ids) != 0).astype(np.float32)


def reference_flop_counts(model_config: ModelConfig, tgt_vocab_size: int) -> FlopCounts:
    """The :class:`~translator.flops.FlopCounts` of :func:`build_reference_model`'s model.

    It differs from the `Seq2Seq`'s (:func:`translator.flops.flop_counts`) where the stock layers
    do: decoder layer 0 reads the embeddings only; Luong `general` projects each query
    (`2 * U * E` per target token) instead of each key, and then scores over `E`; Bahdanau
    projects keys and queries as ours.
    """
    cfg, enc, dec = model_config, model_config.encoder, model_config.decoder
    e, u = enc.output_size, dec.units
    keys = query = vector = pair = 0
    if dec.attention == "luong":
        if dec.attention_score == "general":
            query = dense_flops(u, e)
        pair = 2 * e + 2 * e
    elif dec.attention == "bahdanau":
        keys, query = dense_flops(e, u), dense_flops(u, u)
        pair = 2 * u + 2 * e
    if dec.attention != "none":
        vector = dense_flops(e + u, u)
    return FlopCounts(
        encoder_per_src_token=encoder_flops_per_token(enc, cfg.embedding_dim),
        keys_per_src_token=keys,
        bridge_per_sentence=bridge_flops_per_sentence(cfg),
        decoder_per_tgt_token=decoder_rnn_flops_per_token(dec, cfg.embedding_dim),
        query_per_tgt_token=query,
        attention_vector_per_tgt_token=vector,
        output_per_tgt_token=dense_flops(u, tgt_vocab_size),
        attention_per_pair=pair,
    )
