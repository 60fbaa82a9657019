"""tf.data input: encoded pairs batched by length buckets, and padded batches for decoding.

A :class:`BucketedDataset` is built from an *examples source*: :class:`EncodedExamples` (encoded
pairs in memory: the valid split, tests) or `translator.data.records.RecordExamples` (the training
split as sharded TFRecord files, never read into memory). A source knows its pairs' lengths (so
the number of batches of a pass is exact without reading the data) and streams its pairs in
their order; the dataset shuffles, buckets and pads them. With a `resegment` function (subword
sampling, `translator.data.tokenizers.PairSampler`) each pair is segmented afresh every time it is
read, inside tf.data, before it is bucketed by its new length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import tensorflow as tf

from translator.data.tokenizers import BOS_ID, EOS_ID, PAD_ID

BUCKET_BOUNDARIES = (6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 40, 48, 64, 96, 128)
# The largest shuffle buffer `shuffle_buffer=None` asks for: the whole data up to this many pairs,
# beyond it (corpora larger than memory) a buffer of this many.
MAX_SHUFFLE_BUFFER = 1_000_000
# Pairs segmented afresh per call of the `resegment` function (one tensorflow-text call a chunk).
RESEGMENT_CHUNK = 256

# `resegment(src, tgt)`: int32 RaggedTensors [B, (S)], [B, (T)] -> the same pairs re-segmented.
Resegment = Callable[[tf.RaggedTensor, tf.RaggedTensor], tuple[tf.RaggedTensor, tf.RaggedTensor]]


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


def shard_positions(n: int, shard: tuple[int, int] | None) -> slice:
    """The positions `shard=(num_shards, index)` keeps of `n` examples (every `num_shards`-th
    from `index`), as a slice; all of them for None."""
    if shard is None:
        return slice(0, n)
    num_shards, index = shard
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"shard={shard!r}: expected (num_shards >= 1, 0 <= index < num_shards)")
    return slice(index, n, num_shards)


class ExamplesSource(Protocol):
    """What :class:`BucketedDataset` needs of its data.

    `lengths[i]` is `max(len(src_i), len(tgt_i) + 1)` of pair i (the bucketing length);
    `target_tokens` is the sum of `len(tgt) + 1` (target tokens with EOS). `stream` yields the
    pairs of `shard` in their order (or, with `order_seed`, in a cheaper order that a shuffle
    buffer smaller than the data mixes better), in a form `decode` turns into `(src, tgt)` int32
    vectors without BOS/EOS; the shuffle buffer holds the streamed form.
    """

    lengths: np.ndarray
    target_tokens: int

    def __len__(self) -> int: ...

    def stream(
        self, shard: tuple[int, int] | None = None, order_seed: int | None = None
    ) -> tf.data.Dataset: ...

    def decode(self, ds: tf.data.Dataset) -> tf.data.Dataset: ...


class EncodedExamples:
    """Encoded pairs in memory: an examples source (see :class:`ExamplesSource`).

    Args:
        src: encoded source sentences (ids without BOS/EOS).
        tgt: encoded target sentences.
    """

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]):
        if len(src) != len(tgt):
            raise ValueError(f"{len(src)} source but {len(tgt)} target sentences")
        self.src, self.tgt = src, tgt
        self.lengths = np.array(
            [max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)], dtype=np.int64
        )
        self.target_tokens = int(sum(len(t) + 1 for t in tgt))

    def __len__(self) -> int:
        return len(self.src)

    def stream(
        self, shard: tuple[int, int] | None = None, order_seed: int | None = None
    ) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((_ragged(self.src), _ragged(self.tgt)))
        if shard is not None and shard[0] > 1:
            ds = ds.shard(*shard)
        return ds

    def decode(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds


class BucketedDataset:
    """Teacher-forcing batches `((src, tgt_in), tgt_out)`, grouped by length to avoid padding.

    tgt_in is BOS + target, tgt_out is target + EOS; both right-padded with 0.

    Args:
        src: encoded source sentences, or an examples source (:class:`EncodedExamples`,
            `RecordExamples`) with `tgt=None`; see also :meth:`from_examples`.
        tgt: encoded target sentences (None with an examples source).
        batch_tokens: approximate number of target tokens per batch (used as given: a caller
            that splits batches over replicas passes the scaled value).
        max_batch_size: cap on sentences per batch (used as given).
        shuffle: shuffle examples (and so batches) each pass.
        seed: shuffle seed.
        shuffle_buffer: examples in tf.data's shuffle buffer; None (the default) holds them all
            (a uniform shuffle of every pass) up to `MAX_SHUFFLE_BUFFER` (1,000,000) examples,
            and that many beyond. The training data can be ordered (the bundled dictionary
            phrases follow the sentences, sorted), which a smaller buffer only mixes locally;
            the training records are then read in a seeded shard order, several shards at a
            time.
        resegment: segments the pairs afresh each time they are read (subword sampling, e.g.
            `translator.data.tokenizers.pair_sampler`), in chunks of `RESEGMENT_CHUNK` pairs,
            after shuffling; the pairs are bucketed by their new lengths. The source's lengths
            are then those of the best segmentation, so `steps_per_pass` (and an epoch without
            `steps_per_epoch`) counts the batches such a pass would take, and every bucket of
            `BUCKET_BOUNDARIES` is kept (sampled segmentations are longer). None: the pairs as
            the source holds them.
    """

    def __init__(
        self,
        src: Sequence[Sequence[int]] | ExamplesSource,
        tgt: Sequence[Sequence[int]] | None,
        batch_tokens: int,
        max_batch_size: int,
        shuffle: bool = True,
        seed: int = 1,
        shuffle_buffer: int | None = None,
        resegment: Resegment | None = None,
    ):
        examples = src if tgt is None else EncodedExamples(src, tgt)
        if len(examples) == 0:
            raise ValueError("no training pairs")
        self.examples = examples
        self.lengths = examples.lengths
        self.resegment = resegment
        max_len = int(self.lengths.max())
        if resegment is None:
            self.boundaries = [b for b in BUCKET_BOUNDARIES if b < max_len + 1] or [max_len + 1]
        else:
            self.boundaries = list(BUCKET_BOUNDARIES)
        self.batch_tokens, self.max_batch_size = batch_tokens, max_batch_size
        self.batch_sizes = bucket_batch_sizes(self.boundaries, batch_tokens, max_batch_size)
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, seed, shuffle_buffer
        self.target_tokens = examples.target_tokens

    @classmethod
    def from_examples(
        cls,
        examples: ExamplesSource,
        batch_tokens: int,
        max_batch_size: int,
        shuffle: bool = True,
        seed: int = 1,
        shuffle_buffer: int | None = None,
        resegment: Resegment | None = None,
    ) -> BucketedDataset:
        """Batches of an examples source (e.g. the training records of `open_train_examples`)."""
        return cls(
            examples, None, batch_tokens, max_batch_size, shuffle, seed, shuffle_buffer, resegment
        )

    def steps_per_pass(self, shard: tuple[int, int] | None = None) -> int:
        """Number of batches in one pass over the data, or over `shard`'s part of it (exact:
        buckets flush their remainders; with `resegment`, of the best segmentation)."""
        lengths = self.lengths[shard_positions(len(self.lengths), shard)]
        bucket = np.searchsorted(np.array(self.boundaries), lengths, side="right")
        counts = np.bincount(bucket, minlength=len(self.batch_sizes))
        return int(sum(math.ceil(c / bs) for c, bs in zip(counts, self.batch_sizes, strict=True)))

    def buffer_size(self, shard: tuple[int, int] | None = None) -> int:
        """Examples the shuffle buffer holds (see `shuffle_buffer`)."""
        n = len(range(len(self.lengths))[shard_positions(len(self.lengths), shard)])
        cap = MAX_SHUFFLE_BUFFER if self.shuffle_buffer is None else self.shuffle_buffer
        return max(1, min(cap, n))

    def dataset(
        self, repeat: bool = False, shard: tuple[int, int] | None = None, autotune: bool = True
    ) -> tf.data.Dataset:
        """The batches; `shard=(num_shards, index)` keeps every `num_shards`-th example (in the
        data's order) from `index` on, before shuffling: one worker's part, for multi-worker
        training. The parts of all indices hold every example exactly once.

        `autotune=False` runs the pipeline without tf.data's autotuning model (the `AUTOTUNE`
        settings take tf.data's fixed defaults). It is for a dataset iterated afresh many times
        in a process, such as the validation batches: each iterator's autotuning thread sleeps
        for a period that doubles up to 60 s, and deleting the iterator waits for that thread,
        which stalled training by up to 40 s per epoch in about a third of the flagship's
        epochs."""
        positions = range(len(self.lengths))[shard_positions(len(self.lengths), shard)]
        shard = shard if shard is not None and shard[0] > 1 else None
        n = len(positions)
        buffer = self.buffer_size(shard)
        # A buffer that holds everything shuffles uniformly whatever the order it is filled in, so
        # the data is read in its order (the records give the batches of the in-memory pairs);
        # a smaller one is helped by a seeded order of the record shards.
        order_seed = None
        if self.shuffle and buffer < n:
            order_seed = (self.seed * 1_000_003 + 17) % (2**31 - 1)
        ds = self.examples.stream(shard=shard, order_seed=order_seed)
        if self.shuffle:
            ds = ds.shuffle(buffer, seed=self.seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = self.examples.decode(ds)
        if self.resegment is not None:
            # After the repeat, so every read of a pair draws a new segmentation; in order.
            ds = ds.ragged_batch(RESEGMENT_CHUNK)
            ds = ds.map(self.resegment, num_parallel_calls=tf.data.AUTOTUNE).unbatch()

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
        ds = ds.map(lambda s, ti, to: ((s, ti), to)).prefetch(tf.data.AUTOTUNE)
        if not autotune:
            options = tf.data.Options()
            options.autotune.enabled = False
            ds = ds.with_options(options)
        return ds


def pad_batch(seqs: Sequence[Sequence[int]], min_width: int = 1) -> np.ndarray:
    """Right-pad int sequences with 0 into an int32 array [B, max(len, min_width)]."""
    width = max([len(s) for s in seqs] + [min_width])
    out = np.zeros((len(seqs), width), dtype=np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def _longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices by decreasing length, ties in index order."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), for fast decoding: up to
    `batch_size` each, and (with `max_tokens`) no more rows than keep the batch padded to its
    longest within `max_tokens` positions (at least one sentence): a very long input is not
    padded together with 63 others (a 1M-token line in a batch of 64 once asked for 49 GB)."""
    order = _longest_first(lengths)
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        rows = batch_size
        if max_tokens is not None:
            rows = max(1, min(batch_size, max_tokens // max(1, lengths[order[start]])))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def length_sorted_windows(
    lengths: Sequence[int],
    batch_size: int,
    max_sentences: int,
    max_padding: float,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Indices sorted as :func:`length_sorted_batches`, in windows for a search that steps
    `batch_size` sentences at a time and refills them from its window.

    A window holds at least `batch_size` sentences (fewer only at the end, or when `max_tokens`
    says so) and at most `max_sentences`; it stops growing before padding its sentences to its
    longest would add more than `max_padding` (a fraction of its real tokens), or make more than
    `max_tokens` padded positions (the memory a window holds at once; at least one sentence).
    """
    order = _longest_first(lengths)
    windows: list[list[int]] = []
    start = 0
    while start < len(order):
        longest, total, end = lengths[order[start]], 0, start
        while end < len(order) and end - start < max_sentences:
            grown = total + lengths[order[end]]
            padded = (end - start + 1) * longest
            if end > start and padded > (max_tokens or padded):
                break
            if end - start >= batch_size and padded > (1 + max_padding) * grown:
                break
            total, end = grown, end + 1
        windows.append(order[start:end])
        start = end
    return windows
