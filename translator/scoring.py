"""Scoring given translations: the log-probability a model gives them, for filtering and reranking.

The score of a target `Y` (tokens `y_1 .. y_n`, then `y_{n+1}` = EOS) for a source `X` is::

    total(Y | X) = sum over t = 1 .. n + 1 of log p(y_t | y_<t, X)      (natural log)

teacher-forced: the model reads the given target, not its own outputs. It is the `score` that
greedy and beam search give a hypothesis (before any length normalisation), so the score of a
search's output is the search's own score. An ensemble's per-token log-probability is the mean of
its members' log-probabilities, as in ensemble search (:mod:`translator.decoding.ensemble`).

How the log-probabilities are computed: a `Seq2Seq` reads whole target sequences in one
teacher-forced pass (the computation of training, with its fused recurrent layers); an ensemble
averages its members'; any other :class:`~translator.decoding.contract.StepModel` is stepped
through the decoding contract in a compiled loop. Padding does not change a score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from translator.data.batching import length_sorted_batches, pad_batch
from translator.data.tokenizers import PAD_ID
from translator.decoding.contract import Seq2SeqStepModel, StepModel, as_step_model, stepper_of
from translator.decoding.ensemble import EnsembleStepModel

SCORE_TOKENS = 16384  # padded source + target positions a scoring batch holds at most


@dataclass(frozen=True)
class ScoredPair:
    """The score of one (source, target) pair.

    total: the sum of the target tokens' log-probabilities, EOS included (natural log; 0 at
        best, -inf for a target the model cannot produce).
    tokens: the number of target tokens, EOS included (so at least 1).
    per_token: `total / tokens`, the mean log-probability of a token.
    """

    total: float
    tokens: int
    per_token: float


def token_log_probs(model: Any, src_ids: tf.Tensor, tgt_in: tf.Tensor, tgt_out: tf.Tensor):
    """The log-probability of every target token, teacher-forced.

    Args:
        model: a `Seq2Seq`, an :class:`EnsembleStepModel` or any step model.
        src_ids: [B, S] int32 right-padded source ids.
        tgt_in: [B, T] int32, BOS + target ids, right-padded.
        tgt_out: [B, T] int32, target ids + EOS, right-padded.

    Returns:
        float32 [B, T]: `log p(tgt_out[b, t] | tgt_in[b, :t + 1], src_ids[b])` (meaningless at
        padding, where `tgt_out` is 0).
    """
    if isinstance(model, EnsembleStepModel):
        members = [token_log_probs(m, src_ids, tgt_in, tgt_out) for m in model.members]
        return tf.add_n(members) / float(len(members))
    if isinstance(model, Seq2SeqStepModel):
        model = model.model
    if hasattr(model, "decode_sequence"):  # a Seq2Seq: whole sequences, as in training
        logits = tf.cast(model((src_ids, tgt_in), training=False), tf.float32)
        # log_softmax at the target tokens only, without a second [B, T, V] tensor.
        return tf.gather(logits, tgt_out, batch_dims=2) - tf.reduce_logsumexp(logits, axis=-1)
    return _stepwise_log_probs(as_step_model(model), src_ids, tgt_in, tgt_out)


def _stepwise_log_probs(model: StepModel, src_ids, tgt_in, tgt_out) -> tf.Tensor:
    """`token_log_probs` through the decoding contract: one `step` per target position."""
    memory, state = model.start(src_ids)
    steps = tf.shape(tgt_in)[1]
    step = stepper_of(model)

    def body(t, state, out):
        log_probs, state = step(tgt_in[:, t], state, memory)
        return t + 1, state, out.write(t, tf.gather(log_probs, tgt_out[:, t], batch_dims=1))

    _, _, out = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), state, tf.TensorArray(tf.float32, size=steps)),
    )
    return tf.transpose(out.stack())


class Scorer:
    """Compiled, batched scoring of (source ids, target ids) pairs with one model.

    Args:
        model: a `Seq2Seq`, an :class:`EnsembleStepModel` or any step model.
        bos_id: the token every target starts from.
        eos_id: the token that ends a target (scored with it).

    Example:
        >>> scorer = Scorer(model, bos_id=2, eos_id=3)
        >>> scorer.score([[5, 6, 7]], [[9, 8]])[0].total
        -1.73
    """

    def __init__(self, model: Any, *, bos_id: int, eos_id: int):
        self.model = model
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self._log_probs = tf.function(
            self._masked_log_probs,
            input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3,
            reduce_retracing=True,
        )

    def _masked_log_probs(self, src_ids, tgt_in, tgt_out) -> tf.Tensor:
        """[B, T] token log-probabilities, 0 at target padding."""
        log_probs = token_log_probs(self.model, src_ids, tgt_in, tgt_out)
        return tf.where(tf.not_equal(tgt_out, PAD_ID), log_probs, 0.0)

    def score(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        batch_size: int = 64,
    ) -> list[ScoredPair]:
        """Score pairs of id sequences (without BOS/EOS), in batches of similar length.

        An empty source is not run through the model: as translation gives it the empty output
        with score 0, an empty target scores 0 and any other target -inf.

        Returns:
            One :class:`ScoredPair` per pair, in input order.
        """
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets; give pairs")
        totals = [0.0 if not t else -math.inf for t in targets]
        real = [i for i, s in enumerate(sources) if len(s)]
        lengths = [len(sources[i]) + len(targets[i]) for i in real]
        # At most SCORE_TOKENS padded positions a batch: its logits are [rows, T, V].
        for batch in length_sorted_batches(lengths, batch_size, SCORE_TOKENS):
            idx = [real[j] for j in batch]
            log_probs = self._log_probs(
                tf.constant(pad_batch([sources[i] for i in idx])),
                tf.constant(pad_batch([[self.bos_id, *targets[i]] for i in idx])),
                tf.constant(pad_batch([[*targets[i], self.eos_id] for i in idx])),
            ).numpy()
            for row, i in enumerate(idx):
                totals[i] = float(np.sum(log_probs[row], dtype=np.float64))
        return [
            ScoredPair(total, len(t) + 1, total / (len(t) + 1))
            for total, t in zip(totals, targets, strict=True)
        ]
