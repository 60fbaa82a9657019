"""tf.data input: encoded pairs batched by length buckets, and padded batches for decoding."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from translator.data.tokenizers import BOS_ID, EOS_ID, PAD_ID

BUCKET_BOUNDARIES = (6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 64, 96, 128)


def bucket_batch_sizes(
    boundaries: Sequence[int], batch_tokens: int, max_batch_size: int
) -> list[int]:
    """Batch size per bucket so that a batch holds about `batch_tokens` target tokens."""
    upper = list(boundaries) + [boundaries[-1] * 2]
    return [max(1, min(max_batch_size, batch_tokens // b)) for b in upper]


def _ragged(seqs: Sequence[Sequence[int]]) -> tf.RaggedTensor:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(lengths.sum()))
    return tf.RaggedTensor.from_row_lengths(flat, lengths)


class BucketedDataset:
    """Teacher-forcing batches `((src, tgt_in), tgt_out)`, grouped by length to avoid padding.

    tgt_in is BOS + target, tgt_out is target + EOS; both right-padded with 0.

    Args:
        src: encoded source sentences.
        tgt: encoded target sentences.
        batch_tokens: approximate number of target tokens per batch.
        max_batch_size: cap on sentences per batch.
        shuffle: shuffle examples (and so batches) each pass.
        seed: shuffle seed.
        shuffle_buffer: examples in tf.data's shuffle buffer; None (the default) holds them all,
            a uniform shuffle of every pass. The training data can be ordered (the bundled
            dictionary phrases follow the sentences, sorted), which a smaller buffer only mixes
            locally.
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]],
        tgt: Sequence[Sequence[int]],
        batch_tokens: int,
        max_batch_size: int,
        shuffle: bool = True,
        seed: int = 1,
        shuffle_buffer: int | None = None,
    ):
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source but {len(tgt)} target sentences")
        if not src:
            raise ValueError("no training pairs")
        self.src, self.tgt = src, tgt
        self.lengths = np.array([max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)])
        max_len = int(self.lengths.max())
        self.boundaries = [b for b in BUCKET_BOUNDARIES if b < max_len + 1] or [max_len + 1]
        self.batch_sizes = bucket_batch_sizes(self.boundaries, batch_tokens, max_batch_size)
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.target_tokens = int(sum(len(t) + 1 for t in tgt))

    def steps_per_pass(self) -> int:
        """Number of batches in one pass over the data (exact: buckets flush their remainders)."""
        bucket = np.searchsorted(np.array(self.boundaries), self.lengths, side="right")
        counts = np.bincount(bucket, minlength=len(self.batch_sizes))
        return int(sum(math.ceil(c / bs) for c, bs in zip(counts, self.batch_sizes, strict=True)))

    def dataset(self, repeat: bool = False) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((_ragged(self.src), _ragged(self.tgt)))
        if self.shuffle:
            buffer = len(self.src)
            if self.shuffle_buffer is not None:
                buffer = min(self.shuffle_buffer, buffer)
            ds = ds.shuffle(
                buffer,
                seed=self.seed,
                reshuffle_each_iteration=True,
            )
        if repeat:
            ds = ds.repeat()

        def to_example(s, t):
            bos = tf.constant([BOS_ID], tf.int32)
            eos = tf.constant([EOS_ID], tf.int32)
            return s, tf.concat([bos, t], 0), tf.concat([t, eos], 0)

        ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.bucket_by_sequence_length(
            lambda s, ti, to: tf.maximum(tf.shape(s)[0], tf.shape(ti)[0]),
            bucket_boundaries=self.boundaries,
            bucket_batch_sizes=self.batch_sizes,
            padding_values=(PAD_ID, PAD_ID, PAD_ID),
        )
        ds = ds.map(lambda s, ti, to: ((s, ti), to))
        return ds.prefetch(tf.data.AUTOTUNE)


def pad_batch(seqs: Sequence[Sequence[int]], min_width: int = 1) -> np.ndarray:
    """Right-pad int sequences with 0 into an int32 array [B, max(len, min_width)]."""
    width = max([len(s) for s in seqs] + [min_width])
    out = np.zeros((len(seqs), width), dtype=np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), for fast decoding."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
