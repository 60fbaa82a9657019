"""Batched greedy and beam search inside compiled TensorFlow loops.

Search uses only the model's `encode(src_ids)` and `decode_step(tokens, states, encoder)`, so any
architecture exposing those two works with it. Every tensor of the `EncoderOutput` and of the
decoder state list is treated generically: its first axis is the batch, nothing else is assumed
(an attention decoder may read `encoder.outputs` / `encoder.mask` and keep states of any shape).

Scores:
    score(Y) = sum of the log-probabilities of the output tokens, EOS included.

    Beam search ranks hypotheses by the length-normalised score of GNMT (Wu et al., 2016)::

        lp(Y) = ((5 + |Y|) / 6) ** alpha
        normalized_score(Y) = score(Y) / lp(Y)

    where `|Y|` is the number of output tokens including EOS and `alpha` is `length_penalty`
    (`alpha = 0` gives `lp = 1`: no normalisation).

Lengths:
    `max_lengths[b]` is the maximum number of tokens before EOS for sentence `b`: at step
    `t >= max_lengths[b]` the only allowed token is EOS. EOS is forbidden (its log-probability set
    to -1e9) at steps `t < min_length`.

Beam search (batch `B`, beam `K`, the model runs on `B * K` rows, row `b * K + k`):
    - at step 0 only beam 0 of each sentence is live (the others have score -inf), so the `K`
      beams are distinct;
    - of the candidate extensions, an EOS candidate among a sentence's top `K` moves to that
      sentence's finished set (size `K`, kept sorted by normalised score); the top `K` non-EOS
      candidates are the next live beams (so `beam_size=1` is exactly greedy search);
    - a sentence is done when no live beam can beat its worst kept finished hypothesis: with
      `alpha > 0` the bound for a live beam is `logprob_sum / lp(max_lengths[b] + 1)` (log-probs
      only decrease and `lp` is largest at the maximum length); a done sentence is frozen;
    - the loop stops when every sentence is done or the maximum length is reached.

Ties are broken towards the lowest token id (and lowest beam), as `tf.argmax` does in greedy
search, since `tf.math.top_k` puts the lower index first among equal values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from translator.tokenizers import BOS_ID, EOS_ID, PAD_ID

BLOCKED = -1e9  # log-probability given to a forbidden EOS (min_length), as in greedy search
TOPK_BLOCK = 64  # block size of the two-stage top-k over the vocabulary
TOPK_BLOCKED_MIN_VOCAB = 1024  # vocabularies at least this large use the two-stage top-k


@dataclass
class Hypothesis:
    """One decoded output.

    tokens: target ids without BOS/EOS.
    score: sum of token log-probabilities (EOS included).
    normalized_score: `score / lp(len(tokens) + 1)`, the score used for ranking (see the module
        docstring); when not given it equals `score` (no length normalisation).
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


def length_penalty(lengths, alpha) -> tf.Tensor:
    """GNMT length penalty `((5 + lengths) / 6) ** alpha` (float32, shape of `lengths`).

    Args:
        lengths: int or float tensor, number of output tokens including EOS.
        alpha: scalar float; 0 gives 1 everywhere.
    """
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, tf.cast(alpha, tf.float32))


def _lp_numpy(n_tokens: int, alpha: float) -> float:
    return ((5.0 + n_tokens) / 6.0) ** alpha


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


def _keep_where(done: tf.Tensor, old: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """`old` where `done` [B] is True else `new`, for tensors [B, ...] of any rank."""
    mask = tf.reshape(done, tf.concat([tf.shape(done), tf.ones([tf.rank(new) - 1], tf.int32)], 0))
    return tf.where(mask, old, new)


def _greedy_loop(model, src_ids, max_lengths, min_length):
    """Greedy decoding.

    Args:
        src_ids: [B, S] int32 right-padded source ids.
        max_lengths: [B] int32, maximum number of tokens before EOS is forced.
        min_length: scalar int32, EOS is not allowed before this many tokens.

    Returns:
        tokens [B, L] (EOS then PAD after the end) and scores [B] (sum of log-probabilities).
    """
    encoder = model.encode(src_ids, training=False)
    batch = tf.shape(src_ids)[0]
    limit = tf.reduce_max(max_lengths) + 1
    tokens = tf.fill([batch], tf.constant(BOS_ID, tf.int32))
    finished = tf.zeros([batch], tf.bool)
    scores = tf.zeros([batch], tf.float32)
    out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
    states = list(encoder.states)

    def cond(t, tokens, finished, scores, states, out):
        return tf.logical_and(t < limit, tf.logical_not(tf.reduce_all(finished)))

    def body(t, tokens, finished, scores, states, out):
        logits, new_states = model.decode_step(tokens, states, encoder, training=False)
        logp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        vocab = tf.shape(logp)[1]
        is_eos = tf.equal(tf.range(vocab), EOS_ID)
        block_eos = tf.logical_and(is_eos[None, :], t < min_length)
        logp = tf.where(block_eos, tf.constant(BLOCKED, tf.float32), logp)
        nxt = tf.argmax(logp, axis=-1, output_type=tf.int32)
        nxt = tf.where(t >= max_lengths, EOS_ID, nxt)
        step_score = tf.gather(logp, nxt, batch_dims=1)
        scores = scores + tf.where(finished, 0.0, step_score)
        nxt = tf.where(finished, PAD_ID, nxt)
        new_states = [
            _keep_where(finished, s, n) for s, n in zip(states, list(new_states), strict=True)
        ]
        finished = tf.logical_or(finished, tf.equal(nxt, EOS_ID))
        return t + 1, nxt, finished, scores, new_states, out.write(t, nxt)

    _, _, _, scores, _, out = tf.while_loop(
        cond,
        body,
        [tf.constant(0), tokens, finished, scores, states, out],
        maximum_iterations=limit,
    )
    return tf.transpose(out.stack()), scores


def _beam_loop(model, src_ids, max_lengths, min_length, alpha, beam_size: int):
    """Batched beam search (see the module docstring for the algorithm).

    Args:
        src_ids: [B, S] int32 right-padded source ids.
        max_lengths: [B] int32, maximum number of tokens before EOS is forced.
        min_length: scalar int32, EOS is not allowed before this many tokens.
        alpha: scalar float32 length penalty (0: rank by the sum of log-probabilities).
        beam_size: K, a Python int.

    Returns:
        The finished set of every sentence, sorted by normalised score (best first):
        tokens [B, K, L] (valid up to `lengths - 1`; EOS not stored), lengths [B, K] int32
        (output tokens including EOS), scores [B, K] (sum of log-probabilities) and
        normalized [B, K]. Unused slots have score -inf.
    """
    k = beam_size
    neg_inf = tf.constant(-np.inf, tf.float32)
    encoder = model.encode(src_ids, training=False)
    batch = tf.shape(src_ids)[0]
    limit = tf.reduce_max(max_lengths) + 1
    # Row b * K + j is beam j of sentence b. The encoder output is tiled once; beams of one
    # sentence share it, so it never needs re-gathering.
    tiled = tf.nest.map_structure(functools.partial(tf.repeat, repeats=k, axis=0), encoder)
    row_max = tf.repeat(max_lengths, k)  # [B*K]
    lp_max = length_penalty(max_lengths + 1, alpha)  # [B]
    row_offset = tf.range(batch)[:, None] * k  # [B, 1]

    first_live = tf.constant([0.0] + [-np.inf] * (k - 1), tf.float32)
    alive_logp = tf.tile(first_live[None, :], [batch, 1])  # [B, K]
    alive_seq = tf.zeros([batch, k, limit], tf.int32)
    tokens = tf.fill([batch * k], tf.constant(BOS_ID, tf.int32))
    fin_seq = tf.zeros([batch, k, limit], tf.int32)
    fin_len = tf.zeros([batch, k], tf.int32)
    fin_logp = tf.fill([batch, k], neg_inf)
    fin_norm = tf.fill([batch, k], neg_inf)
    done = tf.zeros([batch], tf.bool)
    states = list(tiled.states)
    positions = tf.range(limit)[None, None, :]

    def cond(t, tokens, states, alive_logp, alive_seq, fin_seq, fin_len, fin_logp, fin_norm, done):
        return tf.logical_and(t < limit, tf.logical_not(tf.reduce_all(done)))

    def body(t, tokens, states, alive_logp, alive_seq, fin_seq, fin_len, fin_logp, fin_norm, done):
        logits, new_states = model.decode_step(tokens, states, tiled, training=False)
        logp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)  # [B*K, V]
        vocab = logp.shape[-1]
        # The sentence-wide top K candidates and the top K non-EOS candidates both lie within
        # each beam's top K + 1 tokens (at most one of them is EOS).
        per_beam = k + 1 if vocab is None else min(k + 1, vocab)
        # [B*K, K+1], sorted, lowest id first among ties.
        vals, ids = top_k_lowest_first(logp, per_beam)
        eos_lp = tf.where(t < min_length, tf.constant(BLOCKED, tf.float32), logp[:, EOS_ID])
        is_eos = tf.equal(ids, EOS_ID)
        vals = tf.where(is_eos, eos_lp[:, None], vals)
        # Past max_lengths only EOS is allowed: the row's one candidate is EOS.
        forced = (t >= row_max)[:, None]
        first = tf.equal(tf.range(per_beam), 0)[None, :]
        vals = tf.where(forced, tf.where(first, eos_lp[:, None], neg_inf), vals)
        ids = tf.where(forced, EOS_ID, ids)

        cand = tf.reshape(
            alive_logp[:, :, None] + tf.reshape(vals, [batch, k, per_beam]), [batch, k * per_beam]
        )
        cand_ids = tf.reshape(ids, [batch, k * per_beam])
        cand_eos = tf.equal(cand_ids, EOS_ID)

        # Finished: EOS candidates among the sentence's top K.
        top_vals, top_idx = tf.math.top_k(cand, k)
        new_fin = tf.logical_and(tf.gather(cand_eos, top_idx, batch_dims=1), top_vals > neg_inf)
        new_logp = tf.where(new_fin, top_vals, neg_inf)
        new_norm = tf.where(new_fin, top_vals / length_penalty(t + 1, alpha), neg_inf)
        new_seq = tf.gather(alive_seq, top_idx // per_beam, batch_dims=1)
        all_norm = tf.concat([fin_norm, new_norm], 1)
        fin_norm, keep = tf.math.top_k(all_norm, k)  # old entries first on ties
        fin_logp = tf.gather(tf.concat([fin_logp, new_logp], 1), keep, batch_dims=1)
        fin_len = tf.gather(tf.concat([fin_len, tf.fill([batch, k], t + 1)], 1), keep, batch_dims=1)
        fin_seq = tf.gather(tf.concat([fin_seq, new_seq], 1), keep, batch_dims=1)

        # Live: the top K non-EOS candidates.
        alive_vals, alive_idx = tf.math.top_k(tf.where(cand_eos, neg_inf, cand), k)
        parent = alive_idx // per_beam  # [B, K]
        next_tokens = tf.gather(cand_ids, alive_idx, batch_dims=1)  # [B, K]
        alive_seq = tf.gather(alive_seq, parent, batch_dims=1)
        alive_seq = tf.where(tf.equal(positions, t), next_tokens[:, :, None], alive_seq)
        rows = tf.reshape(parent + row_offset, [-1])
        states = tf.nest.map_structure(functools.partial(tf.gather, indices=rows), list(new_states))

        # Done when the best live beam cannot beat the worst kept finished hypothesis.
        bound = alive_vals[:, 0] / lp_max
        done = tf.logical_or(done, bound <= fin_norm[:, k - 1])
        alive_logp = tf.where(done[:, None], neg_inf, alive_vals)
        return (
            t + 1,
            tf.reshape(next_tokens, [-1]),
            states,
            alive_logp,
            alive_seq,
            fin_seq,
            fin_len,
            fin_logp,
            fin_norm,
            done,
        )

    loop_vars = [
        tf.constant(0),
        tokens,
        states,
        alive_logp,
        alive_seq,
        fin_seq,
        fin_len,
        fin_logp,
        fin_norm,
        done,
    ]
    out = tf.while_loop(cond, body, loop_vars, maximum_iterations=limit)
    fin_seq, fin_len, fin_logp, fin_norm = out[5:9]
    return fin_seq, fin_len, fin_logp, fin_norm


_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32),  # src_ids
    tf.TensorSpec([None], tf.int32),  # max_lengths
    tf.TensorSpec([], tf.int32),  # min_length
]


class Searcher:
    """Compiled greedy and beam search for one model (each traced once per beam size).

    Example:
        >>> searcher = Searcher(model)
        >>> hyps = searcher.search(src_ids, max_lengths, beam_size=5, n_best=2, length_penalty=0.6)
        >>> hyps[0][0].tokens, hyps[0][0].score, hyps[0][0].normalized_score
    """

    def __init__(self, model):
        self.model = model
        self._greedy = tf.function(
            functools.partial(_greedy_loop, model),
            input_signature=_SIGNATURE,
            reduce_retracing=True,
        )
        self._beams: dict[int, Callable] = {}

    def _beam_function(self, beam_size: int) -> Callable:
        if beam_size not in self._beams:
            model = self.model
            self._beams[beam_size] = tf.function(
                functools.partial(_beam_loop, model, beam_size=beam_size),
                input_signature=[*_SIGNATURE, tf.TensorSpec([], tf.float32)],
                reduce_retracing=True,
            )
        return self._beams[beam_size]

    def greedy(
        self, src_ids: np.ndarray, max_lengths: np.ndarray, min_length: int = 0
    ) -> list[Hypothesis]:
        """Greedy-decode a padded batch.

        Args:
            src_ids: [B, S] right-padded source ids.
            max_lengths: [B] maximum number of output tokens before EOS.
            min_length: EOS is forbidden before this many tokens.

        Returns:
            One hypothesis per row (`normalized_score == score`).
        """
        if src_ids.shape[0] == 0:
            return []
        tokens, scores = self._greedy(
            tf.constant(src_ids, tf.int32),
            tf.constant(max_lengths, tf.int32),
            tf.constant(min_length, tf.int32),
        )
        return [
            Hypothesis(_strip(row), float(s))
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
    ) -> list[list[Hypothesis]]:
        """Beam-search a padded batch (always the beam loop, also for `beam_size=1`).

        Args:
            src_ids: [B, S] right-padded source ids.
            max_lengths: [B] maximum number of output tokens before EOS.
            beam_size: K, the number of live hypotheses per sentence.
            n_best: hypotheses returned per sentence (at most `beam_size`).
            length_penalty: alpha of the GNMT length penalty (0: none).
            min_length: EOS is forbidden before this many tokens.

        Returns:
            Per row, `n_best` distinct hypotheses sorted by normalised score, best first (fewer
            only when fewer outputs exist, e.g. `max_lengths[b] == 0` allows only the empty one).
        """
        _check_options(beam_size, n_best, length_penalty)
        if src_ids.shape[0] == 0:
            return []
        fn = self._beam_function(int(beam_size))
        seq, lengths, scores, norm = fn(
            tf.constant(src_ids, tf.int32),
            tf.constant(max_lengths, tf.int32),
            tf.constant(min_length, tf.int32),
            tf.constant(length_penalty, tf.float32),
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
    ) -> list[list[Hypothesis]]:
        """Decode a padded batch: greedy for `beam_size == 1`, else beam search.

        Arguments and result as in :meth:`beam`. With greedy search, `normalized_score` is still
        `score / lp(len(tokens) + 1)` for the given `length_penalty`.
        """
        _check_options(beam_size, n_best, length_penalty)
        if beam_size > 1:
            return self.beam(
                src_ids,
                max_lengths,
                beam_size=beam_size,
                n_best=n_best,
                length_penalty=length_penalty,
                min_length=min_length,
            )
        hyps = self.greedy(src_ids, max_lengths, min_length=min_length)
        return [
            [Hypothesis(h.tokens, h.score, h.score / _lp_numpy(len(h.tokens) + 1, length_penalty))]
            for h in hyps
        ]


def _check_options(beam_size: int, n_best: int, length_penalty: float) -> None:
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be non-negative, got {length_penalty}")


def _strip(row: np.ndarray) -> list[int]:
    """Greedy output row -> tokens before the first EOS."""
    out = []
    for t in row:
        t = int(t)
        if t == EOS_ID:
            break
        out.append(t)
    return out
