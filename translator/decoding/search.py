"""Batched greedy and beam search inside compiled TensorFlow loops.

Search knows a model only through the decoding contract (:mod:`translator.decoding.contract`):
`start(src_ids) -> (memory, state)` and `step(tokens, state, memory) -> (log_probs, state)`. Every
tensor of `memory` and `state` is treated generically: its first axis is the batch, nothing else is
assumed. BOS and EOS ids are arguments of :class:`Searcher`.

Scores:
    score(Y) = sum of the log-probabilities of the output tokens, EOS included.

    Beam search ranks hypotheses by the length-normalised score of GNMT (Wu et al., 2016) with a
    word reward (He et al., 2016; Murray & Chiang, 2018)::

        lp(Y) = ((5 + |Y|) / 6) ** alpha
        normalized_score(Y) = (score(Y) + word_reward * |Y|) / lp(Y)

    where `|Y|` is the number of output tokens including EOS, `alpha` is `length_penalty`
    (`alpha = 0` gives `lp = 1`: no normalisation) and `word_reward` (0: none) is a bonus per output
    token against beam search's preference for short outputs. Both only matter between hypotheses
    of different lengths: live beams all have the same length at a step.

Lengths (:func:`apply_length_rules`, shared by both loops):
    `max_lengths[b]` is the maximum number of tokens before EOS for sentence `b`: at step
    `t >= max_lengths[b]` the only allowed token is EOS (every other token gets -inf). EOS is
    forbidden (its log-probability set to -1e9) at steps `t < min_length`.

Beam search (batch `B`, beam `K`, the model runs on `B * K` rows, row `b * K + k`):
    - at step 0 only beam 0 of each sentence is live (the others have score -inf), so the `K`
      beams are distinct;
    - of the candidate extensions, an EOS candidate among a sentence's top `K` moves to that
      sentence's finished set (size `K`, kept sorted by normalised score); the top `K` non-EOS
      candidates are the next live beams (so `beam_size=1` is exactly greedy search);
    - a sentence is done when no live beam can beat its worst kept finished hypothesis. A live
      beam's future numerator is at most `n = logprob_sum + word_reward * l`, with `l` the
      maximum length `max_lengths[b] + 1` (for a reward > 0; else the shortest future length
      `t + 2`), since log-probs only decrease; the bound is `n / lp(max_lengths[b] + 1)` when
      `n < 0` (`lp` is largest at the maximum length) and `n / lp(t + 1)` otherwise; a done
      sentence is frozen;
    - the loop stops when every sentence is done or the maximum length is reached.

Ties are broken towards the lowest token id (and lowest beam), as `tf.argmax` does in greedy
search, since `tf.math.top_k` puts the lower index first among equal values.

(Just over 500 lines: the two loops, the rules they share and this description of the algorithm are
kept in one module on purpose, so that one reading shows all of search.)
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from translator.config import DecodeConfig
from translator.decoding.contract import StepModel, as_step_model, stepper_of

BLOCKED = -1e9  # log-probability given to a forbidden EOS (min_length), as in greedy search
TOPK_BLOCK = 64  # block size of the two-stage top-k over the vocabulary
TOPK_BLOCKED_MIN_VOCAB = 1024  # vocabularies at least this large use the two-stage top-k
XLA_LENGTH_MULTIPLE = 8  # with `xla`, sources are padded to a multiple of this (fewer compiles)


@dataclass
class Hypothesis:
    """One decoded output.

    tokens: target ids without BOS/EOS.
    score: sum of token log-probabilities (EOS included).
    normalized_score: `(score + word_reward * (len(tokens) + 1)) / lp(len(tokens) + 1)`, the score
        used for ranking (see the module docstring); when not given it equals `score`.
    """

    tokens: list[int]
    score: float
    normalized_score: float | None = None

    def __post_init__(self) -> None:
        if self.normalized_score is None:
            self.normalized_score = self.score


def max_output_lengths(src_lengths: np.ndarray, ratio: float, extra: int) -> np.ndarray:
    """Maximum number of output tokens (EOS excluded) per sentence: ceil(ratio * src_len) + extra."""
    return np.array([int(math.ceil(ratio * n)) + int(extra) for n in src_lengths], dtype=np.int32)


def length_penalty(lengths: Any, alpha: Any) -> Any:
    """GNMT length penalty `((5 + lengths) / 6) ** alpha`.

    Args:
        lengths: number of output tokens including EOS: a Python number, a NumPy array, or a
            tensor (int or float; the result is then float32 of its shape).
        alpha: scalar; 0 gives 1 everywhere.
    """
    if isinstance(lengths, tf.Tensor):
        lengths, alpha = tf.cast(lengths, tf.float32), tf.cast(alpha, tf.float32)
    return ((5.0 + lengths) / 6.0) ** alpha


def top_k_lowest_first(
    x: tf.Tensor, k: int, block: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Exactly `tf.math.top_k(x, k)` for x [N, V]: values [N, k] sorted descending, ids [N, k],
    lowest index first among equal values; faster for large V.

    On CPU `tf.math.top_k` with k > 1 costs several times a pass over x. Here the rows are cut
    into blocks of `block` entries, the k blocks with the largest maxima are kept (the k best
    entries lie in them: each better block holds a distinct better entry), put back in index
    order so that ties still resolve to the lowest index, and only their k * block entries go
    through `tf.math.top_k`. `block` defaults to `TOPK_BLOCK`.
    """
    block = block or TOPK_BLOCK
    vocab = x.shape[-1]
    if vocab is None or vocab < TOPK_BLOCKED_MIN_VOCAB or k * block * 4 > vocab:
        return tf.math.top_k(x, k)
    n_blocks = -(-vocab // block)
    if n_blocks * block != vocab:
        x = tf.pad(x, [[0, 0], [0, n_blocks * block - vocab]], constant_values=-np.inf)
    blocks = tf.reshape(x, [-1, n_blocks, block])
    _, best = tf.math.top_k(tf.reduce_max(blocks, axis=-1), k)  # [N, k]
    best = tf.sort(best, axis=-1)
    cand = tf.reshape(tf.gather(blocks, best, batch_dims=1), [-1, k * block])
    vals, pos = tf.math.top_k(cand, k)
    ids = tf.gather(best, pos // block, batch_dims=1) * block + pos % block
    return vals, ids


def keep_where(done: tf.Tensor, old: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """`old` where `done` [B] is True else `new`, for tensors [B, ...] of any rank."""
    mask = tf.reshape(done, tf.concat([tf.shape(done), tf.ones([tf.rank(new) - 1], tf.int32)], 0))
    return tf.where(mask, old, new)


def _repeat(nest: Any, k: int) -> Any:
    """Every tensor of `nest` [B, ...] repeated to [B * K, ...] (row b * K + j is copy j of b)."""
    return tf.nest.map_structure(functools.partial(tf.repeat, repeats=k, axis=0), nest)


def apply_length_rules(cand, cand_ids, eos_lp, t, max_lengths, min_length, eos_id: int):
    """The length rules of both searches, on the candidate tokens of each row at step `t`.

    Args:
        cand: [N, C] candidate log-probabilities (greedy: the best token other than EOS and EOS;
            beam: each beam's top K + 1, best first).
        cand_ids: their token ids, [N, C] or [1, C].
        eos_lp: [N] the log-probability of EOS in each row.
        t: the step, a scalar or [N] (each row's own step).
        max_lengths: [N]; in a row with `t >= max_lengths[row]` only EOS is allowed: its first
            candidate becomes EOS and the others -inf.
        min_length: while `t < min_length`, EOS has the log-probability `BLOCKED`.

    Returns:
        `(cand, cand_ids)` [N, C] with the rules applied.
    """
    eos_lp = tf.where(t < min_length, tf.constant(BLOCKED, tf.float32), eos_lp)[:, None]
    cand = tf.where(tf.equal(cand_ids, eos_id), eos_lp, cand)
    forced = (t >= max_lengths)[:, None]
    first = tf.equal(tf.range(tf.shape(cand)[1]), 0)[None, :]
    cand = tf.where(forced, tf.where(first, eos_lp, tf.constant(-np.inf, tf.float32)), cand)
    return cand, tf.where(forced, eos_id, cand_ids)


def _gather(nest: Any, idx: tf.Tensor) -> Any:
    """Rows `idx` [R] of every tensor of `nest` [N, ...]."""
    return tf.nest.map_structure(lambda x: tf.gather(x, idx), nest)


def greedy_choice(logp, t, max_lengths, min_length, eos_id: int):
    """The greedy token of each row, with the length rules.

    Args:
        logp: [R, V] log-probabilities; t, max_lengths: [R] each row's step and maximum length.

    Returns:
        `(tokens [R] int32, their log-probabilities [R])`.

    Two candidates per row, EOS and the best other token, in id order (so ties go to the lower
    id, as `tf.argmax` over the vocabulary and beam search's top-k decide them).
    """
    eos_lp = logp[:, eos_id]
    is_eos = tf.equal(tf.range(tf.shape(logp)[1]), eos_id)[None, :]
    other = tf.argmax(
        tf.where(is_eos, tf.constant(-np.inf, tf.float32), logp), axis=-1, output_type=tf.int32
    )
    pair_ids = tf.stack([tf.minimum(other, eos_id), tf.maximum(other, eos_id)], 1)
    pair_lp = tf.gather(logp, pair_ids, batch_dims=1)
    pair_lp, pair_ids = apply_length_rules(
        pair_lp, pair_ids, eos_lp, t, max_lengths, min_length, eos_id
    )
    best = tf.argmax(pair_lp, axis=-1, output_type=tf.int32)
    return tf.gather(pair_ids, best, batch_dims=1), tf.gather(pair_lp, best, batch_dims=1)


class _GreedyState(NamedTuple):
    t: tf.Tensor  # [R] tokens output so far by each slot's sentence
    idx: tf.Tensor  # [R] the sentence in each slot
    live: tf.Tensor  # [R] bool: the slot's sentence is not finished
    tokens: tf.Tensor  # [R] previous tokens
    slot_scores: tf.Tensor  # [R] sums of log-probabilities so far
    queued: tf.Tensor  # the first sentence not yet given a slot
    state: Any  # the model's state nest, [R, ...]
    memory: Any  # the memory of the slots' sentences, [R, ...]
    out: tf.Tensor  # [N + 1, L] tokens (EOS where not written; row N takes empty slots' writes)
    scores: tf.Tensor  # [N + 1] finished sentences' scores


def greedy_loop(
    model: StepModel,
    src_ids,
    max_lengths,
    min_length,
    bos_id: int,
    eos_id: int,
):
    """Greedy decoding of a batch: :func:`greedy_decode` after encoding `src_ids` [N, S] (int32,
    right-padded) in one `model.start`."""
    memory, state = model.start(src_ids)
    return greedy_decode(model, memory, state, max_lengths, min_length, bos_id, eos_id)


def greedy_decode(
    model: StepModel,
    memory,
    state,
    max_lengths,
    min_length,
    bos_id: int,
    eos_id: int,
    slots: int | None = None,
    refill_at: int | None = None,
):
    """Greedy decoding of `N` encoded sentences in `R = min(N, slots)` rows that are refilled.

    Args:
        memory, state: `model.start`'s nests for the `N` sentences.
        max_lengths: [N] int32, maximum number of tokens before EOS is forced.
        min_length: scalar int32, EOS is not allowed before this many tokens.
        slots: the number of rows the model steps (default all `N`: one batch, no refilling).
        refill_at: with more sentences than slots, finished rows take the next sentences (their
            memory and start state) as soon as this many rows are free (default `R // 8`, at
            least 1), or when none is left running.

    Returns:
        tokens [N, L] (EOS after the end) and scores [N] (sum of log-probabilities).

    Every row is its own sentence at its own step (`t` is per row), so refilling changes no
    result: a sentence's tokens and score are those of decoding it alone. A batch runs until its
    longest output ends, so with fixed batches about half of the rows' steps go to sentences that
    have already ended (sorted by source length, on the bundled corpus); refilled rows keep the
    model stepping sentences that are still running.

    The tokens are written into a preallocated [N + 1, L] tensor (not a growing TensorArray), so
    the loop also compiles with XLA.
    """
    memory_all, state_all = memory, state
    n = tf.shape(max_lengths)[0]
    rows = n if slots is None else tf.minimum(n, slots)
    refill_at = tf.maximum(rows // 8, 1) if refill_at is None else tf.constant(refill_at)
    limit = tf.reduce_max(max_lengths) + 1
    eos = tf.constant(eos_id, tf.int32)
    step = stepper_of(model)

    def cond(s: _GreedyState):
        return tf.reduce_any(s.live)

    def body(s: _GreedyState):
        logp, new_state = step(s.tokens, s.state, s.memory)
        nxt, lp = greedy_choice(logp, s.t, tf.gather(max_lengths, s.idx), min_length, eos_id)
        slot_scores = s.slot_scores + tf.where(s.live, lp, 0.0)
        at = tf.stack([tf.where(s.live, s.idx, n), tf.where(s.live, s.t, 0)], 1)
        out = tf.tensor_scatter_nd_update(s.out, at, tf.where(s.live, nxt, eos))
        ended = tf.logical_and(s.live, tf.equal(nxt, eos))
        scores = tf.tensor_scatter_nd_update(
            s.scores, tf.where(ended, s.idx, n)[:, None], slot_scores
        )
        live = tf.logical_and(s.live, tf.logical_not(ended))
        ran = _GreedyState(
            s.t + 1, s.idx, live, nxt, slot_scores, s.queued, new_state, s.memory, out, scores
        )
        free = tf.logical_not(live)
        n_free = tf.reduce_sum(tf.cast(free, tf.int32))
        left = n - s.queued

        def refill():
            rank = tf.cumsum(tf.cast(free, tf.int32)) - 1
            take = tf.logical_and(free, rank < left)
            idx = tf.where(take, s.queued + rank, s.idx)
            state = tf.nest.map_structure(
                functools.partial(keep_where, take), _gather(state_all, idx), new_state
            )
            return ran._replace(
                t=tf.where(take, 0, ran.t),
                idx=idx,
                live=tf.logical_or(live, take),
                tokens=tf.where(take, bos_id, nxt),
                slot_scores=tf.where(take, 0.0, slot_scores),
                queued=s.queued + tf.reduce_sum(tf.cast(take, tf.int32)),
                state=state,
                memory=_gather(memory_all, idx),
            )

        due = tf.logical_or(n_free >= refill_at, tf.logical_not(tf.reduce_any(live)))
        return (tf.cond(tf.logical_and(left > 0, due), refill, lambda: ran),)

    idx = tf.range(rows)
    start = _GreedyState(
        t=tf.zeros([rows], tf.int32),
        idx=idx,
        live=tf.ones([rows], tf.bool),
        tokens=tf.fill([rows], tf.constant(bos_id, tf.int32)),
        slot_scores=tf.zeros([rows], tf.float32),
        queued=rows,
        state=_gather(state_all, idx),
        memory=_gather(memory_all, idx),
        out=tf.fill([n + 1, limit], eos),
        scores=tf.zeros([n + 1], tf.float32),
    )
    (end,) = tf.while_loop(cond, body, (start,))
    return end.out[:n], end.scores[:n]


class _BeamState(NamedTuple):
    t: tf.Tensor  # step
    tokens: tf.Tensor  # [B*K] previous tokens of the live beams
    state: Any  # the model's state nest, [B*K, ...]
    alive_logp: tf.Tensor  # [B, K] live beams' sums of log-probabilities (-inf: dead)
    alive_seq: tf.Tensor  # [B, K, L] live beams' tokens
    fin_seq: tf.Tensor  # [B, K, L] finished hypotheses' tokens (EOS not stored)
    fin_len: tf.Tensor  # [B, K] their lengths, EOS included
    fin_logp: tf.Tensor  # [B, K] their sums of log-probabilities
    fin_norm: tf.Tensor  # [B, K] their normalised scores (sorted, best first)
    done: tf.Tensor  # [B] bool


def beam_loop(
    model: StepModel,
    src_ids,
    max_lengths,
    min_length,
    alpha,
    beam_size: int,
    bos_id,
    eos_id,
    word_reward=0.0,
):
    """Batched beam search (see the module docstring for the algorithm).

    Args:
        src_ids: [B, S] int32 right-padded source ids.
        max_lengths: [B] int32, maximum number of tokens before EOS is forced.
        min_length: scalar int32, EOS is not allowed before this many tokens.
        alpha: scalar float32 length penalty (0: rank by the sum of log-probabilities).
        beam_size: K, a Python int.
        word_reward: scalar float32 bonus per output token (EOS included) in the ranking score.

    Returns:
        The finished set of every sentence, sorted by normalised score (best first):
        tokens [B, K, L] (valid up to `lengths - 1`; EOS not stored), lengths [B, K] int32
        (output tokens including EOS), scores [B, K] (sum of log-probabilities) and
        normalized [B, K]. Unused slots have score -inf.
    """
    k = beam_size
    neg_inf = tf.constant(-np.inf, tf.float32)
    memory, state = model.start(src_ids)
    batch = tf.shape(src_ids)[0]
    limit = tf.reduce_max(max_lengths) + 1
    # Row b * K + j is beam j of sentence b. The memory is repeated once; beams of one sentence
    # share it, so only the state is reordered as beams are chosen.
    memory = _repeat(memory, k)
    row_max = tf.repeat(max_lengths, k)  # [B*K]
    lp_max = length_penalty(max_lengths + 1, alpha)  # [B]
    word_reward = tf.cast(word_reward, tf.float32)
    # The longest future length counts for a reward, the shortest for a penalty (bound below).
    reward_len = tf.cast(max_lengths + 1, tf.float32)  # [B]
    row_offset = tf.range(batch)[:, None] * k  # [B, 1]
    positions = tf.range(limit)[None, None, :]
    step = stepper_of(model)

    def cond(s: _BeamState):
        return tf.logical_and(s.t < limit, tf.logical_not(tf.reduce_all(s.done)))

    def body(s: _BeamState):
        t = s.t
        logp, new_state = step(s.tokens, s.state, memory)  # [B*K, V]
        vocab = logp.shape[-1]
        # The sentence-wide top K candidates and the top K non-EOS candidates both lie within
        # each beam's top K + 1 tokens (at most one of them is EOS).
        per_beam = k + 1 if vocab is None else min(k + 1, vocab)
        vals, ids = top_k_lowest_first(logp, per_beam)  # [B*K, K+1], lowest id first on ties
        vals, ids = apply_length_rules(vals, ids, logp[:, eos_id], t, row_max, min_length, eos_id)
        cand = tf.reshape(
            s.alive_logp[:, :, None] + tf.reshape(vals, [batch, k, per_beam]),
            [batch, k * per_beam],
        )
        cand_ids = tf.reshape(ids, [batch, k * per_beam])
        cand_eos = tf.equal(cand_ids, eos_id)

        # Finished: EOS candidates among the sentence's top K.
        top_vals, top_idx = tf.math.top_k(cand, k)
        new_fin = tf.logical_and(tf.gather(cand_eos, top_idx, batch_dims=1), top_vals > neg_inf)
        new_logp = tf.where(new_fin, top_vals, neg_inf)
        fin_num = top_vals + word_reward * tf.cast(t + 1, tf.float32)
        new_norm = tf.where(new_fin, fin_num / length_penalty(t + 1, alpha), neg_inf)
        new_seq = tf.gather(s.alive_seq, top_idx // per_beam, batch_dims=1)
        fin_norm, keep = tf.math.top_k(tf.concat([s.fin_norm, new_norm], 1), k)  # old first on ties
        fin_logp = tf.gather(tf.concat([s.fin_logp, new_logp], 1), keep, batch_dims=1)
        fin_len = tf.gather(
            tf.concat([s.fin_len, tf.fill([batch, k], t + 1)], 1), keep, batch_dims=1
        )
        fin_seq = tf.gather(tf.concat([s.fin_seq, new_seq], 1), keep, batch_dims=1)

        # Live: the top K non-EOS candidates.
        alive_vals, alive_idx = tf.math.top_k(tf.where(cand_eos, neg_inf, cand), k)
        parent = alive_idx // per_beam  # [B, K]
        next_tokens = tf.gather(cand_ids, alive_idx, batch_dims=1)  # [B, K]
        alive_seq = tf.gather(s.alive_seq, parent, batch_dims=1)
        alive_seq = tf.where(tf.equal(positions, t), next_tokens[:, :, None], alive_seq)
        rows = tf.reshape(parent + row_offset, [-1])
        state = tf.nest.map_structure(functools.partial(tf.gather, indices=rows), new_state)

        # Done when the best live beam cannot beat the worst kept finished hypothesis.
        future_len = tf.where(word_reward > 0, reward_len, tf.cast(t + 2, tf.float32))
        num = alive_vals[:, 0] + word_reward * future_len
        bound = tf.where(num < 0, num / lp_max, num / length_penalty(t + 1, alpha))
        done = tf.logical_or(s.done, bound <= fin_norm[:, k - 1])
        alive_logp = tf.where(done[:, None], neg_inf, alive_vals)
        return (
            _BeamState(
                t + 1,
                tf.reshape(next_tokens, [-1]),
                state,
                alive_logp,
                alive_seq,
                fin_seq,
                fin_len,
                fin_logp,
                fin_norm,
                done,
            ),
        )

    first_live = tf.constant([0.0] + [-np.inf] * (k - 1), tf.float32)
    start = _BeamState(
        t=tf.constant(0),
        tokens=tf.fill([batch * k], tf.constant(bos_id, tf.int32)),
        state=_repeat(state, k),
        alive_logp=tf.tile(first_live[None, :], [batch, 1]),
        alive_seq=tf.zeros([batch, k, limit], tf.int32),
        fin_seq=tf.zeros([batch, k, limit], tf.int32),
        fin_len=tf.zeros([batch, k], tf.int32),
        fin_logp=tf.fill([batch, k], neg_inf),
        fin_norm=tf.fill([batch, k], neg_inf),
        done=tf.zeros([batch], tf.bool),
    )
    (end,) = tf.while_loop(cond, body, (start,), maximum_iterations=limit)
    return end.fin_seq, end.fin_len, end.fin_logp, end.fin_norm


# The arguments every compiled decoding function starts with (sampling adds its own).
BATCH_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32),  # src_ids
    tf.TensorSpec([None], tf.int32),  # max_lengths
    tf.TensorSpec([], tf.int32),  # min_length
]


class Searcher:
    """Compiled greedy and beam search for one model (each traced once per beam size).

    Args:
        model: a :class:`~translator.decoding.contract.StepModel`, or a `Seq2Seq` (adapted).
        bos_id: the token every output starts from.
        eos_id: the token that ends an output.

    Example:
        >>> searcher = Searcher(model, bos_id=2, eos_id=3)
        >>> hyps = searcher.search(src_ids, max_lengths, beam_size=5, n_best=2, length_penalty=0.6)
        >>> hyps[0][0].tokens, hyps[0][0].score, hyps[0][0].normalized_score
    """

    def __init__(self, model: Any, *, bos_id: int, eos_id: int):
        self.model = as_step_model(model)
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self._functions: dict[tuple, Callable] = {}
        self._lock = threading.Lock()  # `translate` decodes batches in threads

    def _compiled(self, key: tuple, fn: Callable, signature: list, xla: bool) -> Callable:
        """One `tf.function` per search kind, beam size and `xla` (traced once per kind)."""
        key = (*key, bool(xla))
        with self._lock:
            if key not in self._functions:
                self._functions[key] = tf.function(
                    fn, input_signature=signature, reduce_retracing=True, jit_compile=bool(xla)
                )
            return self._functions[key]

    def _greedy_function(self, xla: bool = False) -> Callable:
        loop = functools.partial(greedy_loop, self.model, bos_id=self.bos_id, eos_id=self.eos_id)
        return self._compiled(("greedy",), loop, BATCH_SIGNATURE, xla)

    def _start_function(self, xla: bool = False) -> Callable:
        return self._compiled(("start",), self.model.start, BATCH_SIGNATURE[:1], xla)

    def _refill_function(self, slots: int, xla: bool, memory: Any, state: Any) -> Callable:
        """The compiled :func:`greedy_decode` for `slots`, traced once for any number of
        sentences and source width (its signature is that of `memory` and `state` with every
        dimension unknown)."""
        decode = functools.partial(
            greedy_decode, self.model, bos_id=self.bos_id, eos_id=self.eos_id, slots=slots
        )
        signature = [
            *tf.nest.map_structure(
                lambda x: tf.TensorSpec([None] * x.shape.rank, x.dtype), [memory, state]
            ),
            *BATCH_SIGNATURE[1:],
        ]
        return self._compiled(("refill", slots), decode, signature, xla)

    def _start_in_chunks(self, src_ids: np.ndarray, chunk: int, xla: bool) -> tuple[Any, Any]:
        """`model.start` over `src_ids` [N, S] in chunks of `chunk` rows, each cut to its longest
        source; the memories are padded with zeros to the longest along their source axis (1),
        which changes nothing (see :mod:`translator.decoding.contract`), and concatenated."""
        parts = []
        for i in range(0, src_ids.shape[0], chunk):
            rows = src_ids[i : i + chunk]
            width = max(int((rows != 0).sum(axis=1).max()), 1)  # right-padded with 0
            rows = _pad_for_xla(rows[:, :width]) if xla else rows[:, :width]
            parts.append(self._start_function(xla)(tf.constant(rows, tf.int32)))
        width = max(
            int(tf.shape(x)[1]) for x in tf.nest.flatten([m for m, _ in parts]) if x.shape.rank > 1
        )

        def join(*xs):
            if xs[0].shape.rank > 1:
                xs = [
                    tf.pad(x, [[0, 0], [0, width - x.shape[1]]] + [[0, 0]] * (x.shape.rank - 2))
                    for x in xs
                ]
            return tf.concat(xs, 0)

        memory = tf.nest.map_structure(join, *[m for m, _ in parts])
        state = tf.nest.map_structure(lambda *xs: tf.concat(xs, 0), *[st for _, st in parts])
        return memory, state

    def _beam_function(self, beam_size: int, xla: bool = False) -> Callable:
        def search(src_ids, max_lengths, min_length, alpha, word_reward):
            return beam_loop(
                self.model,
                src_ids,
                max_lengths,
                min_length,
                alpha,
                beam_size,
                self.bos_id,
                self.eos_id,
                word_reward=word_reward,
            )

        signature = [
            *BATCH_SIGNATURE,
            tf.TensorSpec([], tf.float32),  # alpha
            tf.TensorSpec([], tf.float32),  # word_reward
        ]
        return self._compiled(("beam", beam_size), search, signature, xla)

    def greedy(
        self,
        src_ids: np.ndarray,
        max_lengths: np.ndarray,
        min_length: int = 0,
        xla: bool = False,
        slots: int | None = None,
    ) -> list[Hypothesis]:
        """Greedy-decode a padded batch.

        Args:
            src_ids: [B, S] right-padded source ids.
            max_lengths: [B] maximum number of output tokens before EOS.
            min_length: EOS is forbidden before this many tokens.
            xla: run the XLA-compiled loop (sources padded to a multiple of
                `XLA_LENGTH_MULTIPLE`).
            slots: step at most this many rows at once, refilled with the next sentences as
                others end (see :func:`greedy_loop`; the same results as without).

        Returns:
            One hypothesis per row (`normalized_score == score`).
        """
        _check_options(1, 1, 0.0, min_length)
        if src_ids.shape[0] == 0:
            return []
        n = src_ids.shape[0]
        if slots is not None and n > slots:
            memory, state = self._start_in_chunks(src_ids, slots, xla)
            max_lengths = np.asarray(max_lengths, np.int32)
            if xla:  # XLA compiles per shape: N up to a power of two, with rows that end at once
                size = 1 << (len(max_lengths) - 1).bit_length()
                memory, state = _gather((memory, state), np.minimum(np.arange(size), n - 1))
                max_lengths = np.pad(max_lengths, [(0, size - n)])
            tokens, scores = self._refill_function(slots, xla, memory, state)(
                memory, state, tf.constant(max_lengths), tf.constant(min_length, tf.int32)
            )
            tokens, scores = tokens[:n], scores[:n]
        else:
            tokens, scores = self._greedy_function(xla)(
                tf.constant(_pad_for_xla(src_ids) if xla else src_ids, tf.int32),
                tf.constant(max_lengths, tf.int32),
                tf.constant(min_length, tf.int32),
            )
        return [
            Hypothesis(tokens_before_eos(row, self.eos_id), float(s))
            for row, s in zip(tokens.numpy(), scores.numpy(), strict=True)
        ]

    def beam(
        self,
        src_ids: np.ndarray,
        max_lengths: np.ndarray,
        *,
        beam_size: int = 1,
        n_best: int = 1,
        length_penalty: float = 0.0,
        min_length: int = 0,
        word_reward: float = 0.0,
        xla: bool = False,
    ) -> list[list[Hypothesis]]:
        """Beam-search a padded batch (always the beam loop, also for `beam_size=1`).

        Args:
            src_ids: [B, S] right-padded source ids.
            max_lengths: [B] maximum number of output tokens before EOS.
            beam_size: K, the number of live hypotheses per sentence.
            n_best: hypotheses returned per sentence (at most `beam_size`).
            length_penalty: alpha of the GNMT length penalty (0: none).
            min_length: EOS is forbidden before this many tokens.
            word_reward: bonus per output token in the ranking score (0: none).
            xla: run the XLA-compiled loop (see :meth:`greedy`).

        Returns:
            Per row, `n_best` distinct hypotheses sorted by normalised score, best first (fewer
            only when fewer outputs exist, e.g. `max_lengths[b] == 0` allows only the empty one).
        """
        _check_options(beam_size, n_best, length_penalty, min_length, word_reward)
        if src_ids.shape[0] == 0:
            return []
        fn = self._beam_function(int(beam_size), xla)
        seq, lengths, scores, norm = fn(
            tf.constant(_pad_for_xla(src_ids) if xla else src_ids, tf.int32),
            tf.constant(max_lengths, tf.int32),
            tf.constant(min_length, tf.int32),
            tf.constant(length_penalty, tf.float32),
            tf.constant(word_reward, tf.float32),
        )
        seq, lengths, scores, norm = seq.numpy(), lengths.numpy(), scores.numpy(), norm.numpy()
        out = []
        for b in range(seq.shape[0]):
            hyps = [
                Hypothesis(
                    [int(x) for x in seq[b, j, : lengths[b, j] - 1]],
                    float(scores[b, j]),
                    float(norm[b, j]),
                )
                for j in range(n_best)
                if np.isfinite(scores[b, j])
            ]
            out.append(hyps)
        return out

    def search(
        self,
        src_ids: np.ndarray,
        max_lengths: np.ndarray,
        *,
        beam_size: int = 1,
        n_best: int = 1,
        length_penalty: float = 0.0,
        min_length: int = 0,
        word_reward: float = 0.0,
        xla: bool = False,
        slots: int | None = None,
    ) -> list[list[Hypothesis]]:
        """Decode a padded batch: greedy for `beam_size == 1`, else beam search.

        Arguments and result as in :meth:`beam`. With greedy search, `normalized_score` is still
        computed with the given `length_penalty` and `word_reward` (neither changes greedy output).
        """
        _check_options(beam_size, n_best, length_penalty, min_length, word_reward)
        if beam_size > 1:
            return self.beam(
                src_ids,
                max_lengths,
                beam_size=beam_size,
                n_best=n_best,
                length_penalty=length_penalty,
                min_length=min_length,
                word_reward=word_reward,
                xla=xla,
            )
        hyps = self.greedy(src_ids, max_lengths, min_length=min_length, xla=xla, slots=slots)
        return [[_normalized(h, length_penalty, word_reward)] for h in hyps]


def _pad_for_xla(src_ids: np.ndarray) -> np.ndarray:
    """`src_ids` [B, S] padded to [B, S'] with S' the next multiple of `XLA_LENGTH_MULTIPLE`: XLA
    compiles once per shape, and padding changes no result (the encoder and attention mask it)."""
    src_ids = np.asarray(src_ids)
    extra = -src_ids.shape[1] % XLA_LENGTH_MULTIPLE
    return np.pad(src_ids, [(0, 0), (0, extra)]) if extra else src_ids


def _check_options(
    beam_size: int, n_best: int, length_penalty: float, min_length: int, word_reward: float = 0.0
) -> None:
    """The decoding options are checked by `DecodeConfig`, wherever they come from."""
    DecodeConfig(
        beam_size=beam_size,
        n_best=n_best,
        length_penalty=length_penalty,
        min_output_length=min_length,
        word_reward=word_reward,
    )


def _normalized(h: Hypothesis, alpha: float, word_reward: float = 0.0) -> Hypothesis:
    """`h` with `normalized_score = (score + word_reward * n) / lp(n)`, `n = len(tokens) + 1`."""
    n = len(h.tokens) + 1
    norm = (h.score + float(word_reward) * n) / length_penalty(n, float(alpha))
    return Hypothesis(h.tokens, h.score, norm)


def tokens_before_eos(row: np.ndarray, eos_id: int) -> list[int]:
    """A decoded row [L] -> its tokens before the first EOS."""
    ends = np.flatnonzero(row == eos_id)
    return [int(t) for t in row[: ends[0] if ends.size else len(row)]]
