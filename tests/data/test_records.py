"""Tests for translator.data.records and the examples sources of translator.data.batching: the
training split as TFRecord shards gives the batches of the in-memory pairs, exact pass lengths,
shards for workers, lazy readers."""

import io
import itertools
import json

import numpy as np
import pytest

from translator.data.batching import BucketedDataset, EncodedExamples
from translator.data.corpus import (
    CorpusError,
    Pair,
    bundled_path,
    iter_text_pair,
    iter_tsv,
    read_split,
    read_tsv,
)
from translator.data.records import RecordExamples, records_complete, write_records
from translator.data.tokenizers import WordTokenizer
from translator.io import ArtifactError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """600 bundled pairs, word tokenizers, and their records in shards of 64 pairs (10 files)."""
    pairs = read_tsv(bundled_path("train"))[:600]
    src_tok = WordTokenizer.train([p.src for p in pairs], 500)
    tgt_tok = WordTokenizer.train([p.tgt for p in pairs], 500)
    manifest = tmp_path_factory.mktemp("records") / "train.records.json"
    write_records(pairs, src_tok, tgt_tok, manifest, shard_pairs=64, chunk=50)
    src = src_tok.encode_batch([p.src for p in pairs])
    tgt = tgt_tok.encode_batch([p.tgt for p in pairs])
    return manifest, src, tgt


def _pairs(src, tgt):
    return [(tuple(s), tuple(t)) for s, t in zip(src, tgt, strict=True)]


def _rows(batches):
    """The (src, tgt) id tuples of `((src, tgt_in), tgt_out)` batches, padding and EOS removed."""
    rows = []
    for (s, _), to in batches:
        for row_s, row_t in zip(s, to, strict=True):
            rows.append((tuple(row_s[row_s != 0]), tuple(row_t[row_t != 0][:-1])))
    return rows


def _same_batches(a, b):
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip((*ba[0], ba[1]), (*bb[0], bb[1]), strict=True))
        for ba, bb in zip(a, b, strict=True)
    )


def test_records_round_trip(corpus):
    manifest_path, src, tgt = corpus
    manifest = json.loads(manifest_path.read_text())
    assert manifest["pairs"] == 600 and [s["pairs"] for s in manifest["shards"]] == [64] * 9 + [24]
    assert manifest["shards"][0]["file"] == "train-00000-of-00010.tfrecord"
    assert manifest["target_tokens"] == sum(len(t) + 1 for t in tgt)
    assert manifest["src_max_tokens"] == max(map(len, src))
    assert records_complete(manifest_path)
    examples = RecordExamples(manifest_path)
    assert len(examples) == 600 and examples.lengths.dtype == np.uint16
    assert examples.lengths.tolist() == [
        max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)
    ]
    read = [
        (tuple(s.tolist()), tuple(t.tolist()))
        for s, t in examples.decode(examples.stream()).as_numpy_iterator()
    ]
    assert read == _pairs(src, tgt)


def test_records_give_the_batches_of_the_in_memory_pairs(corpus):
    # A buffer that holds every example: the records are read in train.tsv order, so the same
    # seed shuffles them as it shuffles the pairs in memory, pass after pass.
    manifest_path, src, tgt = corpus
    memory = BucketedDataset(src, tgt, 300, 32, shuffle=True, seed=3)
    records = BucketedDataset.from_examples(RecordExamples(manifest_path), 300, 32, True, 3)
    assert records.steps_per_pass() == memory.steps_per_pass()
    assert records.target_tokens == memory.target_tokens
    n = 2 * memory.steps_per_pass() + 5  # into the third pass
    a = list(memory.dataset(repeat=True).take(n).as_numpy_iterator())
    b = list(records.dataset(repeat=True).take(n).as_numpy_iterator())
    assert _same_batches(a, b)
    # A bounded buffer reads the shards in a seeded order, several at a time: still every
    # example once a pass, in exactly steps_per_pass() batches.
    bounded = BucketedDataset.from_examples(RecordExamples(manifest_path), 300, 32, True, 3, 50)
    one_pass = list(bounded.dataset().as_numpy_iterator())
    assert len(one_pass) == bounded.steps_per_pass()
    assert sorted(_rows(one_pass)) == sorted(_pairs(src, tgt))
    first = _rows(one_pass[:4])
    shards_seen = {[tuple(s) for s in src].index(row[0]) // 64 for row in first}
    assert len(shards_seen) > 2  # drawn from several shards at once, not the first one only


@pytest.mark.parametrize("source", ["memory", "records"])
def test_shards_for_workers_see_every_example_exactly_once(corpus, source):
    manifest_path, src, tgt = corpus
    examples = EncodedExamples(src, tgt) if source == "memory" else RecordExamples(manifest_path)
    for buffer in (None, 40):  # in order, and shards interleaved in a seeded order
        data = BucketedDataset.from_examples(examples, 300, 32, True, 5, buffer)
        rows = []
        for index in range(3):
            part = list(data.dataset(shard=(3, index)).as_numpy_iterator())
            assert len(part) == data.steps_per_pass(shard=(3, index))
            got = _rows(part)
            expected = _pairs(src[index::3], tgt[index::3])
            assert sorted(got) == sorted(expected)
            rows += got
        assert sorted(rows) == sorted(_pairs(src, tgt))
    with pytest.raises(ValueError, match="shard"):
        data.dataset(shard=(2, 2))


def test_damaged_records_are_named(corpus, tmp_path):
    manifest_path, _, _ = corpus
    bad = tmp_path / "train.records.json"
    bad.write_text("{not json")
    with pytest.raises(ArtifactError, match="train.records.json"):
        RecordExamples(bad)
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["file"] = "gone.tfrecord"
    bad.write_text(json.dumps(manifest))
    assert not records_complete(bad)
    with pytest.raises(ArtifactError, match="gone.tfrecord is missing.*tokenize"):
        RecordExamples(bad)


def _copy_records(manifest_path, tmp_path):
    for f in manifest_path.parent.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path / manifest_path.name


def test_a_truncated_shard_is_named(corpus, tmp_path):
    manifest_path = _copy_records(corpus[0], tmp_path)
    manifest = json.loads(manifest_path.read_text())
    shard = tmp_path / manifest["shards"][3]["file"]
    assert manifest["shards"][3]["bytes"] == shard.stat().st_size
    assert records_complete(manifest_path)
    shard.write_bytes(shard.read_bytes()[:-100])  # whole records less: read silently as fewer
    with pytest.raises(ArtifactError, match=rf"{shard.name} has \d+ bytes.*truncated.*tokenize"):
        RecordExamples(manifest_path)
    assert not records_complete(manifest_path)  # the train stage writes it again, as a missing one
    # A manifest from before the sizes were recorded is read as before (unchecked).
    for s in manifest["shards"]:
        del s["bytes"]
    manifest_path.write_text(json.dumps(manifest))
    assert len(RecordExamples(manifest_path)) == 600
    assert records_complete(manifest_path)


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_an_unreadable_lengths_file_is_named(corpus, tmp_path):
    manifest_path = _copy_records(corpus[0], tmp_path)
    lengths = tmp_path / "train.lengths.npy"
    good = lengths.read_bytes()
    values = np.load(lengths)
    for content in (
        b"",  # np.load: EOFError
        good[:50],  # a truncated header
        good[:-10],  # truncated data
        b"\x00garbage" * 20,
        _npy(values.astype(np.float32)),
        _npy(values.reshape(20, 30)),
        _npy(values.astype(np.int32) - 1000),
        _npy(np.array(5)),
    ):
        lengths.write_bytes(content)
        with pytest.raises(ArtifactError, match=rf"{lengths.name} is not .*tokenize"):
            RecordExamples(manifest_path)


def test_readers_are_lazy_and_name_the_bad_line(tmp_path):
    f = tmp_path / "big.tsv"
    f.write_text("".join(f"s{i}\tt{i}\n" for i in range(5000)) + "no tab\n", encoding="utf-8")
    pairs = iter_tsv(f)
    assert list(itertools.islice(pairs, 3)) == [
        Pair("s0", "t0"),
        Pair("s1", "t1"),
        Pair("s2", "t2"),
    ]
    with pytest.raises(CorpusError, match=r"big.tsv:5001: expected exactly one tab"):
        list(pairs)

    from translator.config import DataConfig

    stream = read_split(DataConfig(corpus="tsv", train=str(f)), "train")
    assert next(stream) == Pair("s0", "t0")
    with pytest.raises(CorpusError, match=r"big.tsv:5001"):
        for _ in stream:
            pass
    with pytest.raises(CorpusError, match="file not found"):  # at the call, not when read
        read_split(DataConfig(corpus="tsv", train=str(tmp_path / "missing.tsv")), "train")
    (tmp_path / "s.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("x\ny\n", encoding="utf-8")
    aligned = iter_text_pair(tmp_path / "s.txt", tmp_path / "t.txt")
    assert next(aligned) == Pair("a", "x")
    with pytest.raises(CorpusError, match="s.txt has 3 lines but .*t.txt has 2"):
        list(aligned)
