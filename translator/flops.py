"""Useful FLOPs of a :class:`~translator.models.seq2seq.Seq2Seq`, computed from its shapes.

Only the matrix products count, a multiply-add being 2 FLOPs; elementwise work (gates,
activations, masks, dropout), softmaxes and embedding lookups do not. Counts follow the real lengths
of a batch, never its padding: they are the FLOPs the translation needs, not those the kernels
happen to run, so `FLOPs / seconds` is a useful-work rate that padding and bucketing cannot
inflate.

With `F` a layer's input size, `U` its units, `E` the encoder output size (`2 * units` for a
bidirectional encoder merged by `concat`, else `units`), `D` the embedding size and `V` the target
vocabulary, the forward pass costs

- per real source token: the encoder, per layer and direction `2 * gates * U * (F + U)` (gates:
  LSTM 4, GRU 3, Elman 1; `F` is `D` for layer 0, else the previous layer's output size `E`), and
  the attention keys (`project_keys`: Luong `general` `2 * E * U`, Bahdanau `2 * E * U`, Luong
  `dot` 0);
- per sentence: the bridge (`init_hidden: dense`: one `[E, U]` Dense per decoder layer and state;
  `last` and `zero` have no products);
- per target token: the decoder layers (layer 0 reads `D`, plus `E` for Bahdanau, plus `U` with
  input feeding), Bahdanau's query projection `2 * U * U`, the attentional vector
  `2 * (E + U) * U` and the output projection `2 * U * V` (tied or not, the same product);
- per (target token, real source token) pair: the attention score (`2 * A`, `A` the key size: `U`)
  and its share of the context vector (`2 * E`).

Training costs 3 forward passes (the backward pass computes the gradients of both a product's
inputs and its weights, about twice the forward work), decoding runs the encoder once per
sentence and then one decoder step per output token and beam hypothesis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from translator.config import DecoderConfig, EncoderConfig, ModelConfig
from translator.layers import STATES_PER_CELL, output_size

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
"""Weight matrices per recurrent cell: one `[F + U, U]` block per gate (or candidate)."""


def dense_flops(in_dim: int, out_dim: int) -> int:
    """FLOPs of one `[in_dim] x [in_dim, out_dim]` product (one row of a Dense layer)."""
    return 2 * in_dim * out_dim


def rnn_step_flops(cell: str, input_dim: int, units: int) -> int:
    """FLOPs of one time step of one direction of a recurrent layer: `x_t W + h_{t-1} R`, with
    `W` `[input_dim, gates * units]` and `R` `[units, gates * units]`."""
    return 2 * GATES[cell] * units * (input_dim + units)


def encoder_flops_per_token(config: EncoderConfig, embedding_dim: int) -> int:
    """FLOPs of the encoder stack per real source token (all layers, both directions)."""
    directions = 2 if config.bidirectional else 1
    layer_output = output_size(config.units, config.bidirectional, config.merge)
    inputs = [embedding_dim] + [layer_output] * (config.num_layers - 1)
    return sum(directions * rnn_step_flops(config.cell, f, config.units) for f in inputs)


def decoder_rnn_flops_per_token(config: DecoderConfig, input_dim: int) -> int:
    """FLOPs of the decoder's recurrent layers per target token; layer 0 reads `input_dim`."""
    return sum(
        rnn_step_flops(config.cell, input_dim if i == 0 else config.units, config.units)
        for i in range(config.num_layers)
    )


def bridge_flops_per_sentence(config: ModelConfig) -> int:
    """FLOPs of the bridge per sentence: `init_hidden: dense` has one `[E, U]` Dense per decoder
    layer and state; `last` and `zero` multiply nothing."""
    if config.init_hidden != "dense":
        return 0
    dec = config.decoder
    states = dec.num_layers * STATES_PER_CELL[dec.cell]
    return states * dense_flops(config.encoder.output_size, dec.units)


@dataclasses.dataclass(frozen=True)
class FlopCounts:
    """Forward FLOPs of a model per unit of work; see the module docstring for the formulas.

    Attributes:
        encoder_per_src_token: encoder layers, all directions, per real source token.
        keys_per_src_token: the attention's key projection per real source token.
        bridge_per_sentence: the bridge's Dense layers, once per sentence.
        decoder_per_tgt_token: the decoder's recurrent layers per target token.
        query_per_tgt_token: a projection of the attention query per target token (Bahdanau).
        attention_vector_per_tgt_token: the Dense computing the attentional vector.
        output_per_tgt_token: the output projection `[U, V]`.
        attention_per_pair: score and context, per (target token, real source token) pair.
    """

    encoder_per_src_token: int = 0
    keys_per_src_token: int = 0
    bridge_per_sentence: int = 0
    decoder_per_tgt_token: int = 0
    query_per_tgt_token: int = 0
    attention_vector_per_tgt_token: int = 0
    output_per_tgt_token: int = 0
    attention_per_pair: int = 0

    @property
    def source_per_token(self) -> int:
        """Encoder and keys, per real source token."""
        return self.encoder_per_src_token + self.keys_per_src_token

    @property
    def step_per_token(self) -> int:
        """One decoder step per target token, without the attention over the source."""
        return (
            self.decoder_per_tgt_token
            + self.query_per_tgt_token
            + self.attention_vector_per_tgt_token
            + self.output_per_tgt_token
        )


def flop_counts(model_config: ModelConfig, tgt_vocab_size: int) -> FlopCounts:
    """The :class:`FlopCounts` of the `Seq2Seq` that `model_config` builds.

    Args:
        model_config: the `model` config section.
        tgt_vocab_size: V, the size of the output projection. (The source vocabulary does not
            enter: embedding lookups are no products.)
    """
    cfg, enc, dec = model_config, model_config.encoder, model_config.decoder
    e, u = enc.output_size, dec.units
    decoder_input = cfg.embedding_dim
    keys = query = vector = pair = 0
    if dec.attention != "none":
        if dec.attention == "bahdanau":
            decoder_input += e  # the context c_t is part of the step's input
            keys, query = dense_flops(e, u), dense_flops(u, u)
        elif dec.attention_score == "general":
            keys = dense_flops(e, u)
        if dec.input_feeding:
            decoder_input += u
        vector = dense_flops(e + u, u)
        pair = 2 * u + 2 * e  # the score over keys of size U (dot: E == U), the context over E
    return FlopCounts(
        encoder_per_src_token=encoder_flops_per_token(enc, cfg.embedding_dim),
        keys_per_src_token=keys,
        bridge_per_sentence=bridge_flops_per_sentence(cfg),
        decoder_per_tgt_token=decoder_rnn_flops_per_token(dec, decoder_input),
        query_per_tgt_token=query,
        attention_vector_per_tgt_token=vector,
        output_per_tgt_token=dense_flops(u, tgt_vocab_size),
        attention_per_pair=pair,
    )


def _lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(lengths, dtype=np.int64).reshape(-1)


def forward_flops(
    counts: FlopCounts,
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
) -> int:
    """Forward FLOPs of a teacher-forced batch.

    Args:
        counts: the model's :class:`FlopCounts`.
        src_lens: [B] real source tokens per sentence (without padding).
        tgt_lens: [B] real target positions per sentence (the target tokens with EOS, i.e. the
            non-padding entries of the decoder's output side).
    """
    s, t = _lengths(src_lens), _lengths(tgt_lens)
    return int(
        counts.source_per_token * s.sum()
        + counts.bridge_per_sentence * len(s)
        + counts.step_per_token * t.sum()
        + counts.attention_per_pair * (s * t).sum()
    )


def training_flops(
    counts: FlopCounts,
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
) -> int:
    """FLOPs of one optimizer step on a batch: 3 x :func:`forward_flops` (the backward pass takes
    the gradients of both operands of every product, about 2 x the forward work; the optimizer's
    elementwise update does not count)."""
    return 3 * forward_flops(counts, src_lens, tgt_lens)


def decoding_flops(
    counts: FlopCounts,
    src_lens: Sequence[int] | np.ndarray,
    out_lens: Sequence[int] | np.ndarray,
    beam_size: int = 1,
) -> int:
    """FLOPs of decoding sentences: the encoder (with keys and bridge) once per sentence, then per
    output step (`out_len + 1`, the EOS step included) `beam_size` hypotheses each run a decoder
    step, the attention over the sentence's source and the output projection.

    Args:
        counts: the model's :class:`FlopCounts`.
        src_lens: [N] source tokens per sentence; a sentence of length 0 is not decoded (the
            Python API returns an empty translation without running the model) and costs 0.
        out_lens: [N] output tokens per sentence, without EOS.
        beam_size: hypotheses per sentence (1: greedy).
    """
    s, o = _lengths(src_lens), _lengths(out_lens)
    real = s > 0
    s, steps = s[real], o[real] + 1
    per_hypothesis = (
        counts.step_per_token * steps.sum() + counts.attention_per_pair * (s * steps).sum()
    )
    return int(
        counts.source_per_token * s.sum()
        + counts.bridge_per_sentence * len(s)
        + beam_size * per_hypothesis
    )


def flops_per_target_token(
    counts: FlopCounts,
    src_lens: Sequence[int] | np.ndarray,
    tgt_lens: Sequence[int] | np.ndarray,
) -> dict[str, int]:
    """Forward FLOPs per target token of a set of sentences, by part, for the report:
    `encoder` (with keys and bridge), `decoder` (recurrent layers, query projection, attentional
    vector), `attention` (scores and contexts), `output` (the projection), `forward` (their sum)
    and `training` (3 x `forward`)."""
    s, t = _lengths(src_lens), _lengths(tgt_lens)
    tokens = max(1, int(t.sum()))
    parts = {
        "encoder": counts.source_per_token * s.sum() + counts.bridge_per_sentence * len(s),
        "decoder": (counts.step_per_token - counts.output_per_tgt_token) * t.sum(),
        "attention": counts.attention_per_pair * (s * t).sum(),
        "output": counts.output_per_tgt_token * t.sum(),
    }
    out = {k: round(int(v) / tokens) for k, v in parts.items()}
    forward = forward_flops(counts, s, t)
    out["forward"] = round(forward / tokens)
    out["training"] = round(3 * forward / tokens)
    return out
