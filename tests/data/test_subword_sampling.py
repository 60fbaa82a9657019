"""Subword sampling inside tf.data (translator.data.tokenizers.SubwordSampler, PairSampler and
BucketedDataset's `resegment`): unigram subword regularisation and BPE-dropout draw new
segmentations of the same texts each time a pair is read; off, the batches are today's."""

import numpy as np
import pytest
import tensorflow as tf

from translator.data.batching import BUCKET_BOUNDARIES, BucketedDataset
from translator.data.corpus import bundled_path, read_tsv
from translator.data.records import RecordExamples, write_records
from translator.data.tokenizers import (
    PairSampler,
    SentencePieceTokenizer,
    SubwordSampler,
    WordTokenizer,
    pair_sampler,
)

TEXT = "Das Auto steht in der Garage."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """600 bundled pairs, SentencePiece unigram tokenizers and their records in shards of 64."""
    pairs = read_tsv(bundled_path("train"))[:600]
    src_tok = SentencePieceTokenizer.train([p.src for p in pairs], 400)
    tgt_tok = SentencePieceTokenizer.train([p.tgt for p in pairs], 400)
    manifest = tmp_path_factory.mktemp("records") / "train.records.json"
    write_records(pairs, src_tok, tgt_tok, manifest, shard_pairs=64, chunk=50)
    return pairs, src_tok, tgt_tok, manifest


@pytest.fixture(scope="module")
def bpe(corpus):
    pairs = corpus[0]
    return SentencePieceTokenizer.train([p.src for p in pairs], 400, model_type="bpe")


def _samples(sampler, tok, text=TEXT, n=200):
    """`n` segmentations of `text` drawn by `sampler` (one batch of n copies)."""
    ids = tf.ragged.constant([tok.encode(text)] * n, dtype=tf.int32)
    return [tuple(row) for row in sampler(ids).to_list()]


def _rows(batches):
    """The (src, tgt) id tuples of `((src, tgt_in), tgt_out)` batches, padding and EOS removed."""
    rows = []
    for (s, _), to in batches:
        for row_s, row_t in zip(s, to, strict=True):
            rows.append((tuple(row_s[row_s != 0]), tuple(row_t[row_t != 0][:-1])))
    return rows


def _texts(rows, src_tok, tgt_tok):
    return sorted((src_tok.decode(s), tgt_tok.decode(t)) for s, t in rows)


def _same_batches(a, b):
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip((*ba[0], ba[1]), (*bb[0], bb[1]), strict=True))
        for ba, bb in zip(a, b, strict=True)
    )


def test_unigram_samples_from_the_nbest_segmentations(corpus):
    _, tok, _, _ = corpus
    assert tok.model_type == "unigram"
    nbest = {tuple(ids) for ids in tok._sp.nbest_encode(TEXT, nbest_size=4)}
    drawn = _samples(SubwordSampler(tok, alpha=0.1, nbest_size=4, name="t_nbest"), tok)
    assert set(drawn) <= nbest and len(set(drawn)) > 1
    lattice = _samples(SubwordSampler(tok, alpha=0.1, nbest_size=-1, name="t_all"), tok)
    assert len(set(lattice)) > 10  # from every segmentation, not only a few best
    assert {tok.decode(ids) for ids in lattice} == {TEXT}
    # A larger alpha sharpens the distribution towards the best segmentation.
    best = tuple(tok.encode(TEXT))
    sharp = _samples(SubwordSampler(tok, alpha=5.0, nbest_size=-1, name="t_sharp"), tok)
    assert sharp.count(best) > lattice.count(best)


def test_bpe_dropout_varies_segmentations_that_decode_to_the_same_text(bpe):
    assert bpe.model_type == "bpe"
    best = tuple(bpe.encode(TEXT))
    drawn = _samples(SubwordSampler(bpe, alpha=0.1, name="t_bpe"), bpe)
    assert len(set(drawn)) > 10 and drawn.count(best) < len(drawn)
    assert {bpe.decode(ids) for ids in drawn} == {TEXT}
    # BPE-dropout only ever splits: a sampled segmentation has at least the best one's tokens.
    assert min(map(len, drawn)) >= len(best)
    # SentencePiece ignores nbest_size for BPE: the sampler does too; alpha 0 is the best.
    assert len(set(_samples(SubwordSampler(bpe, 0.1, 8, name="t_bpe8"), bpe))) > 10
    assert set(_samples(SubwordSampler(bpe, 0.0, name="t_bpe0"), bpe)) == {best}


def test_sampler_arguments_are_checked(corpus, bpe):
    _, tok, _, _ = corpus
    with pytest.raises(ValueError, match="nbest_size"):
        SubwordSampler(tok, 0.1, nbest_size=1)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        SubwordSampler(bpe, 1.0)
    with pytest.raises(ValueError, match="SentencePiece"):
        SubwordSampler(WordTokenizer.train([TEXT], 20), 0.1)
    with pytest.raises(ValueError, match="sides"):
        pair_sampler(tok, tok, 0.1, sides="source")
    assert pair_sampler(tok, tok, 0.0) is None  # off


def test_pair_sampler_samples_the_sides_asked_for(corpus):
    _, src_tok, tgt_tok, _ = corpus
    src = tf.ragged.constant([src_tok.encode(TEXT)] * 100, dtype=tf.int32)
    tgt = tf.ragged.constant([tgt_tok.encode("The car is in the garage.")] * 100, dtype=tf.int32)
    for sides, src_varies, tgt_varies in (("both", 1, 1), ("src", 1, 0), ("tgt", 0, 1)):
        sampler = pair_sampler(src_tok, tgt_tok, 0.1, sides=sides)
        s, t = sampler(src, tgt)
        assert (len({tuple(r) for r in s.to_list()}) > 1) == bool(src_varies), sides
        assert (len({tuple(r) for r in t.to_list()}) > 1) == bool(tgt_varies), sides
    assert "source and target" in pair_sampler(src_tok, tgt_tok, 0.1).describe()


def test_sampling_off_gives_todays_batches(corpus):
    _, src_tok, tgt_tok, manifest = corpus
    today = BucketedDataset.from_examples(RecordExamples(manifest), 300, 32, True, 3)
    off = BucketedDataset.from_examples(
        RecordExamples(manifest), 300, 32, True, 3, resegment=pair_sampler(src_tok, tgt_tok, 0.0)
    )
    n = 2 * today.steps_per_pass() + 3  # into the third pass
    a = list(today.dataset(repeat=True).take(n).as_numpy_iterator())
    b = list(off.dataset(repeat=True).take(n).as_numpy_iterator())
    assert _same_batches(a, b)


def test_best_segmentation_in_graph_gives_back_the_records(corpus):
    # The sampler detokenises the records' ids and tokenises the text again: with alpha 0 that
    # round trip gives the in-graph tokenizer's segmentation of the original text. That is the
    # Python one but where two segmentations score exactly alike ("000" as "0"+"00" or
    # "00"+"0"): tensorflow-text's SentencePiece breaks such ties the other way.
    import tensorflow_text as tf_text

    pairs, src_tok, tgt_tok, manifest = corpus
    best = PairSampler(
        SubwordSampler(src_tok, 0.0, name="t_src0"), SubwordSampler(tgt_tok, 0.0, name="t_tgt0")
    )
    data = BucketedDataset.from_examples(RecordExamples(manifest), 300, 32, True, 3, None, best)
    rows = _rows(data.dataset().as_numpy_iterator())
    in_graph = []
    for tok, side in ((src_tok, "src"), (tgt_tok, "tgt")):
        tokenizer = tf_text.SentencepieceTokenizer(tok.model_proto, name=f"t_{side}_text")
        ids = tokenizer.tokenize(tf.constant([getattr(p, side) for p in pairs])).to_list()
        in_graph.append([tuple(i) for i in ids])
    assert sorted(rows) == sorted(zip(*in_graph, strict=True))
    python = [(tuple(src_tok.encode(p.src)), tuple(tgt_tok.encode(p.tgt))) for p in pairs]
    assert sum(a != b for a, b in zip(python, zip(*in_graph, strict=True), strict=True)) < 6


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_each_pass_samples_new_segmentations_of_every_pair_once(corpus, bpe, model_type):
    """From the TFRecord shards read in a seeded shard order (a buffer smaller than the data),
    bucketed by the sampled lengths."""
    pairs, src_tok, tgt_tok, manifest = corpus
    if model_type == "bpe":  # a BPE source side (records written with it)
        src_tok = bpe
        manifest = manifest.parent / "bpe" / "train.records.json"
        write_records(pairs, src_tok, tgt_tok, manifest, shard_pairs=64)
    sampler = pair_sampler(src_tok, tgt_tok, 0.2 if model_type == "bpe" else 0.1)
    data = BucketedDataset.from_examples(RecordExamples(manifest), 300, 32, True, 3, 50, sampler)
    best = {(tuple(src_tok.encode(p.src)), tuple(tgt_tok.encode(p.tgt))) for p in pairs}
    texts = sorted((p.src, p.tgt) for p in pairs)
    passes = [list(data.dataset().as_numpy_iterator()) for _ in range(2)]
    for batches in passes:
        rows = _rows(batches)
        assert _texts(rows, src_tok, tgt_tok) == texts  # every pair once, text unchanged
        assert sum(row not in best for row in rows) > len(rows) // 4  # resegmented
        for (s, ti), _ in batches:  # bucketed by the sampled lengths
            lengths = np.maximum((s != 0).sum(1), (ti != 0).sum(1))
            buckets = np.searchsorted(np.array(BUCKET_BOUNDARIES), lengths, side="right")
            assert len(set(buckets.tolist())) == 1
    assert set(_rows(passes[0])) != set(_rows(passes[1]))  # a new segmentation each pass
    # A repeated dataset resamples too: the second pass of one iterator is not the first.
    steps = data.steps_per_pass()
    repeated = list(data.dataset(repeat=True).take(2 * steps).as_numpy_iterator())
    assert set(_rows(repeated[:steps])) != set(_rows(repeated[steps:]))


def test_worker_shards_with_sampling_see_every_pair_once(corpus):
    pairs, src_tok, tgt_tok, manifest = corpus
    sampler = pair_sampler(src_tok, tgt_tok, 0.1)
    data = BucketedDataset.from_examples(RecordExamples(manifest), 300, 32, True, 5, 40, sampler)
    rows = []
    for index in range(3):
        part = _rows(data.dataset(shard=(3, index)).as_numpy_iterator())
        assert _texts(part, src_tok, tgt_tok) == sorted((p.src, p.tgt) for p in pairs[index::3])
        rows += part
    assert len(rows) == len(pairs)
