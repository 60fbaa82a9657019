"""Tests for translator.data.batching: length buckets, shuffling, padding helpers."""

import numpy as np

from translator.data.batching import (
    BucketedDataset,
    length_sorted_batches,
    length_sorted_windows,
    pad_batch,
)
from translator.data.tokenizers import BOS_ID, EOS_ID


def test_buckets_cover_every_pair_once_with_teacher_forcing():
    rng = np.random.default_rng(0)
    src = [list(rng.integers(4, 30, rng.integers(1, 30))) for _ in range(300)]
    tgt = [list(rng.integers(4, 40, rng.integers(1, 30))) for _ in range(300)]
    data = BucketedDataset(src, tgt, batch_tokens=200, max_batch_size=32, shuffle=True, seed=1)
    batches = list(data.dataset().as_numpy_iterator())
    assert len(batches) == data.steps_per_pass()
    seen = []
    for (s, ti), to in batches:
        assert s.shape[0] == ti.shape[0] == to.shape[0] <= 32
        assert (ti[:, 0] == BOS_ID).all()
        lengths = (to != 0).sum(1)
        assert (to[np.arange(len(to)), lengths - 1] == EOS_ID).all()
        shifted = ti[:, 1:] != 0  # tgt_in is BOS + target: target token t sits at t + 1
        assert (ti[:, 1:][shifted] == to[:, :-1][shifted]).all()
        for row_s, row_t in zip(s, to, strict=True):
            seen.append((tuple(row_s[row_s != 0]), tuple(row_t[row_t != 0][:-1])))
    assert sorted(seen) == sorted((tuple(a), tuple(b)) for a, b in zip(src, tgt, strict=True))


def test_training_order_is_shuffled_over_the_whole_data():
    # Ordered data (like the bundled phrases appended after the sentences): the first batch of a
    # pass must draw from all of it, not only from the head a bounded shuffle buffer would hold.
    n = 30000
    src = [[4 + i] for i in range(n)]
    tgt = [[5]] * n
    data = BucketedDataset(src, tgt, batch_tokens=400, max_batch_size=64, shuffle=True, seed=1)
    (first, _), _ = next(iter(data.dataset(repeat=True).as_numpy_iterator()))
    index = first[:, 0] - 4
    assert len(index) == 64 and index.max() > 25000 and index.min() < 5000
    bounded = BucketedDataset(src, tgt, 400, 64, shuffle=True, seed=1, shuffle_buffer=100)
    (first, _), _ = next(iter(bounded.dataset().as_numpy_iterator()))
    assert (first[:, 0] - 4).max() < 200


def test_padding_helpers():
    assert pad_batch([[5, 6], [7]]).tolist() == [[5, 6], [7, 0]]
    batches = length_sorted_batches([3, 9, 1, 5], 2)
    assert batches == [[1, 3], [0, 2]]


def test_length_sorted_windows():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 40, size=500)]
    windows = length_sorted_windows(lengths, 8, 64, 0.5)
    flat = [i for w in windows for i in w]
    assert flat == [i for b in length_sorted_batches(lengths, 8) for i in b]  # the same order
    for w in windows[:-1]:
        assert 8 <= len(w) <= 64
        padded, real = len(w) * lengths[w[0]], sum(lengths[i] for i in w)
        # within the padding budget, unless only one batch fits
        assert padded <= 1.5 * real or len(w) == 8
    assert max(len(w) for w in windows) == 64
    assert length_sorted_windows([5, 1], 8, 64, 0.0) == [[0, 1]]
    # At most max_tokens padded positions (at least one sentence: a long one alone).
    capped = length_sorted_windows(lengths, 8, 64, 0.5, max_tokens=200)
    assert [i for w in capped for i in w] == flat
    assert all(len(w) * lengths[w[0]] <= 200 for w in capped)
    assert any(len(w) < 8 for w in capped) and any(len(w) > 8 for w in capped)
    assert length_sorted_windows([3, 500, 4], 8, 64, 0.5, max_tokens=100) == [[1], [2, 0]]
    assert length_sorted_windows([], 8, 64, 0.5) == []


def test_length_sorted_batches_keep_a_very_long_input_apart():
    """With `max_tokens`, a batch holds no more rows than fit padded to its longest."""
    lengths = [5] * 10 + [100_000] + [7] * 5
    batches = length_sorted_batches(lengths, 4, max_tokens=64)
    assert batches[0] == [10]  # the long input alone (more than max_tokens by itself)
    assert [len(b) for b in batches[1:]] == [4, 4, 4, 3]
    assert sorted(i for b in batches for i in b) == list(range(16))
    assert length_sorted_batches(lengths, 4)[0] == [10, 11, 12, 13]  # no cap: batches of 4


def test_without_autotune_the_batches_are_the_same():
    # The validation batches run without tf.data's autotuning model (see BucketedDataset.dataset):
    # same batches, same order, and the option is really off.
    rng = np.random.default_rng(1)
    src = [list(rng.integers(4, 30, rng.integers(1, 30))) for _ in range(200)]
    tgt = [list(rng.integers(4, 40, rng.integers(1, 30))) for _ in range(200)]
    data = BucketedDataset(src, tgt, batch_tokens=200, max_batch_size=32, shuffle=False)
    tuned, untuned = data.dataset(), data.dataset(autotune=False)
    assert tuned.options().autotune.enabled is not False
    assert untuned.options().autotune.enabled is False
    a = list(tuned.as_numpy_iterator())
    b = list(untuned.as_numpy_iterator())
    assert len(a) == len(b) == data.steps_per_pass()
    for ((s1, t1), o1), ((s2, t2), o2) in zip(a, b, strict=True):
        assert (s1 == s2).all() and (t1 == t2).all() and (o1 == o2).all()
