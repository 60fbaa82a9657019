"""Random sampling decoding (e.g. for back-translation) in a compiled TensorFlow loop.

Like greedy search, one token per step and row, through the decoding contract
(:mod:`translator.decoding.contract`) and with the same length rules
(:func:`~translator.decoding.search.apply_length_rules`); instead of the best token, a token is
drawn at random. The options are OpenNMT-tf's:

- `topk`: 0 samples from the whole distribution, `K > 1` from the `K` most likely tokens
  (renormalised), 1 takes the most likely token: exactly greedy search.
- `temperature`: the log-probabilities are divided by it before sampling; below 1 sharpens the
  distribution (towards greedy), above 1 flattens it.

A hypothesis' score is the model's own log-probability of its tokens (EOS included), without the
temperature, as greedy search scores its output; there is no ranking, so `normalized_score` is
the score.

Randomness is stateless and keyed per sentence: the draws of a sentence are
`tf.random.stateless_uniform` under the key `(seed, hash of its source ids)`, one uniform number a
step, turned into a token by inverting the cumulative distribution. So one seed gives the same
output for a sentence whatever the batch, its order or the chunking of a file, and identical
sentences get identical samples; another seed gives other samples.
"""

from __future__ import annotations

import hashlib
import numbers
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from translator.config import DecodeConfig
from translator.decoding.contract import StepModel, as_step_model, stepper_of
from translator.decoding.search import (
    BATCH_SIGNATURE,
    Hypothesis,
    apply_length_rules,
    keep_where,
    tokens_before_eos,
    top_k_lowest_first,
)

DEFAULT_SEED = 1  # sampling is reproducible by default; another seed draws other samples
MAX_SEED = 2**63 - 1


class StepLoopState(NamedTuple):
    """The loop state of sampling."""

    t: tf.Tensor  # step
    tokens: tf.Tensor  # [B] previous tokens
    finished: tf.Tensor  # [B] bool
    scores: tf.Tensor  # [B] sums of log-probabilities
    state: Any  # the model's state nest
    out: Any  # tokens per step: a TensorArray


def sentence_keys(src_ids: np.ndarray, seed: int) -> np.ndarray:
    """The random key of every row: `(seed, hash of the row's source ids)`.

    Args:
        src_ids: [B, S] right-padded source ids (0 is padding).
        seed: an integer in [0, 2**63 - 1].

    Returns:
        int64 [B, 2].
    """
    check_seed(seed)
    keys = np.empty((src_ids.shape[0], 2), np.int64)
    for row, ids in enumerate(np.asarray(src_ids, np.int32)):
        digest = hashlib.blake2b(ids[ids != 0].astype("<i4").tobytes(), digest_size=8).digest()
        keys[row] = (seed, int.from_bytes(digest, "little") & MAX_SEED)
    return keys


def check_seed(seed: Any) -> None:
    """A `ValueError` unless `seed` is an integer in [0, 2**63 - 1]."""
    if (
        not isinstance(seed, numbers.Integral)
        or isinstance(seed, bool)
        or not 0 <= seed <= MAX_SEED
    ):
        raise ValueError(f"seed: expected an integer from 0 to 2**63 - 1, got {seed!r}")


def draw(
    log_probs: tf.Tensor, ids: tf.Tensor, uniform: tf.Tensor, temperature: Any
) -> tuple[tf.Tensor, tf.Tensor]:
    """One token per row from `softmax(log_probs / temperature)` by inverting its cumulative sum.

    Args:
        log_probs: [N, C] candidate log-probabilities (-inf: impossible); at least one finite.
        ids: [N, C] their token ids.
        uniform: [N] numbers in [0, 1).
        temperature: scalar > 0.

    Returns:
        `(tokens [N] int32, their log_probs [N])`. A candidate of probability 0 is never drawn;
        with one possible candidate, or a single column, that candidate is.
    """
    # Shifted so that the best candidate is 0: dividing by a tiny temperature cannot overflow it.
    shifted = log_probs - tf.reduce_max(log_probs, axis=-1, keepdims=True)
    probs = tf.nn.softmax(shifted / tf.cast(temperature, log_probs.dtype), axis=-1)
    cdf = tf.cumsum(probs, axis=-1)
    target = uniform[:, None] * cdf[:, -1:]
    pos = tf.searchsorted(cdf, target, side="right", out_type=tf.int32)[:, 0]
    # `uniform * total` may round up to the total: take the last possible candidate then.
    width = tf.shape(probs)[1]
    last = width - 1 - tf.argmax(tf.reverse(probs > 0, [1]), axis=1, output_type=tf.int32)
    pos = tf.minimum(pos, last)
    return tf.gather(ids, pos, batch_dims=1), tf.gather(log_probs, pos, batch_dims=1)


def sampling_loop(
    model: StepModel,
    src_ids,
    max_lengths,
    min_length,
    keys,
    temperature,
    topk: int,
    bos_id: int,
    eos_id: int,
):
    """Sampling decoding (see the module docstring).

    Args:
        src_ids: [B, S] int32 right-padded source ids.
        max_lengths: [B] int32, maximum number of tokens before EOS is forced.
        min_length: scalar int32, EOS is not allowed before this many tokens.
        keys: [B, 2] int64, each row's random key (:func:`sentence_keys`).
        temperature: scalar float32 > 0.
        topk: a Python int: 0 the whole distribution, K >= 1 the K most likely tokens.

    Returns:
        tokens [B, L] (EOS after the end) and scores [B] (sum of the model's log-probabilities).
    """
    memory, state = model.start(src_ids)
    batch = tf.shape(src_ids)[0]
    limit = tf.reduce_max(max_lengths) + 1
    # Row b's draw at step t is element t of its own stream (a prefix of a longer stream is the
    # shorter one, so the batch's longest sentence does not change another's draws).
    uniforms = tf.map_fn(
        lambda key: tf.random.stateless_uniform([limit], seed=key),
        keys,
        fn_output_signature=tf.TensorSpec([None], tf.float32),
    )

    step = stepper_of(model)

    def cond(s: StepLoopState):
        return tf.logical_and(s.t < limit, tf.logical_not(tf.reduce_all(s.finished)))

    def body(s: StepLoopState):
        logp, new_state = step(s.tokens, s.state, memory)
        vocab_ids = tf.range(tf.shape(logp)[1])[None, :]
        cand, cand_ids = apply_length_rules(
            logp, vocab_ids, logp[:, eos_id], s.t, max_lengths, min_length, eos_id
        )
        cand_ids = tf.broadcast_to(cand_ids, tf.shape(cand))
        if topk > 0:
            k = topk if logp.shape[-1] is None else min(topk, logp.shape[-1])
            cand, pos = top_k_lowest_first(cand, k)  # best first, lowest id first on ties
            cand_ids = tf.gather(cand_ids, pos, batch_dims=1)
        nxt, lp = draw(cand, cand_ids, uniforms[:, s.t], temperature)
        scores = s.scores + tf.where(s.finished, 0.0, lp)
        nxt = tf.where(s.finished, eos_id, nxt)
        new_state = tf.nest.map_structure(
            lambda old, new: keep_where(s.finished, old, new), s.state, new_state
        )
        finished = tf.logical_or(s.finished, tf.equal(nxt, eos_id))
        return (StepLoopState(s.t + 1, nxt, finished, scores, new_state, s.out.write(s.t, nxt)),)

    start = StepLoopState(
        t=tf.constant(0),
        tokens=tf.fill([batch], tf.constant(bos_id, tf.int32)),
        finished=tf.zeros([batch], tf.bool),
        scores=tf.zeros([batch], tf.float32),
        state=state,
        out=tf.TensorArray(tf.int32, size=0, dynamic_size=True),
    )
    (end,) = tf.while_loop(cond, body, (start,), maximum_iterations=limit)
    return tf.transpose(end.out.stack()), end.scores


_SIGNATURE = [
    *BATCH_SIGNATURE,  # src_ids, max_lengths, min_length
    tf.TensorSpec([None, 2], tf.int64),  # keys
    tf.TensorSpec([], tf.float32),  # temperature
]


class Sampler:
    """Compiled sampling decoding for one model (traced once per `topk`).

    Args:
        model: a :class:`~translator.decoding.contract.StepModel`, or a `Seq2Seq` (adapted).
        bos_id: the token every output starts from.
        eos_id: the token that ends an output.

    Example:
        >>> sampler = Sampler(model, bos_id=2, eos_id=3)
        >>> hyps = sampler.sample(src_ids, max_lengths, topk=10, temperature=0.8, seed=7)
        >>> hyps[0].tokens, hyps[0].score
    """

    def __init__(self, model: Any, *, bos_id: int, eos_id: int):
        self.model = as_step_model(model)
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self._functions: dict[int, Callable] = {}
        self._lock = threading.Lock()  # `translate` decodes batches in threads

    def _function(self, topk: int) -> Callable:
        with self._lock:
            if topk not in self._functions:

                def sample(src_ids, max_lengths, min_length, keys, temperature):
                    return sampling_loop(
                        self.model,
                        src_ids,
                        max_lengths,
                        min_length,
                        keys,
                        temperature,
                        topk,
                        self.bos_id,
                        self.eos_id,
                    )

                self._functions[topk] = tf.function(
                    sample, input_signature=_SIGNATURE, reduce_retracing=True
                )
            return self._functions[topk]

    def sample(
        self,
        src_ids: np.ndarray,
        max_lengths: np.ndarray,
        *,
        topk: int = 0,
        temperature: float = 1.0,
        seed: int = DEFAULT_SEED,
        min_length: int = 0,
    ) -> list[Hypothesis]:
        """Sample one output per row of a padded batch.

        Args:
            src_ids: [B, S] right-padded source ids.
            max_lengths: [B] maximum number of output tokens before EOS.
            topk: 0 the whole distribution, K > 1 the K most likely tokens, 1 greedy.
            temperature: > 0; the log-probabilities are divided by it.
            seed: with the source ids, decides the draws (see the module docstring).
            min_length: EOS is forbidden before this many tokens.

        Returns:
            One hypothesis per row (`normalized_score == score`).
        """
        DecodeConfig(
            sampling_topk=topk, sampling_temperature=temperature, min_output_length=min_length
        )
        keys = sentence_keys(src_ids, seed)
        if src_ids.shape[0] == 0:
            return []
        tokens, scores = self._function(int(topk))(
            tf.constant(src_ids, tf.int32),
            tf.constant(max_lengths, tf.int32),
            tf.constant(min_length, tf.int32),
            tf.constant(keys, tf.int64),
            tf.constant(temperature, tf.float32),
        )
        return [
            Hypothesis(tokens_before_eos(row, self.eos_id), float(s))
            for row, s in zip(tokens.numpy(), scores.numpy(), strict=True)
        ]
