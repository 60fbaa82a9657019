"""Tests for translator.decoding.search: greedy and beam search in compiled loops.

Two small Seq2Seq models (LSTM and GRU, 2-layer decoders) are trained for a few steps on a
reverse-the-sequence task, so their output distributions are peaked but not trivial. A toy
attention model (plain TensorFlow) checks that search treats the encoder output and the decoder
states generically (states of shapes [B, U] and [B, 2, 3], decode_step reading encoder.outputs).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.config import DecoderConfig, EncoderConfig, ModelConfig  # noqa: E402
from translator.data.batching import pad_batch  # noqa: E402
from translator.data.tokenizers import BOS_ID, EOS_ID  # noqa: E402
from translator.decoding import search as search_module  # noqa: E402
from translator.decoding.search import Hypothesis, Searcher, top_k_lowest_first  # noqa: E402
from translator.models import EncoderOutput, build_model, compile_model  # noqa: E402

VOCAB = 16
BEAM = 4
SCORE_ATOL = 1e-4


# --------------------------------------------------------------------------- helpers


def reverse_task(rng: np.random.Generator, n: int, min_len: int = 2, max_len: int = 8):
    """Source sentences of random ids (4..VOCAB-1) and their reversals, padded."""
    src = [list(rng.integers(4, VOCAB, size=k)) for k in rng.integers(min_len, max_len, size=n)]
    tgt = [s[::-1] for s in src]
    return (
        pad_batch(src),
        pad_batch([[BOS_ID, *t] for t in tgt]),
        pad_batch([[*t, EOS_ID] for t in tgt]),
    )


def src_lengths(src: np.ndarray) -> np.ndarray:
    return (src != 0).sum(axis=1)


def teacher_forced_scores(
    model, src: np.ndarray, hyps: list[list[Hypothesis]]
) -> list[list[float]]:
    """Per hypothesis, the sum of log-probabilities of tokens + EOS under teacher forcing.

    All hypotheses go through `model((src, [BOS] + tokens))` in one padded batch (the model masks
    the target padding).
    """
    rows = np.array([i for i, per_input in enumerate(hyps) for _ in per_input])
    flat = [h.tokens for per_input in hyps for h in per_input]
    tgt_in = pad_batch([[BOS_ID, *t] for t in flat])
    logits = model((src[rows].astype(np.int32), tgt_in.astype(np.int32)))
    logp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    scores = iter(
        float(sum(logp[j, i, t] for i, t in enumerate([*toks, EOS_ID])))
        for j, toks in enumerate(flat)
    )
    return [[next(scores) for _ in per_input] for per_input in hyps]


def lp(n_tokens: int, alpha: float) -> float:
    return ((5.0 + n_tokens) / 6.0) ** alpha


@pytest.fixture(scope="module")
def models() -> dict:
    """{cell: (model, searcher)} for LSTM and GRU models trained briefly on the reverse task."""
    out = {}
    src, tgt_in, tgt_out = reverse_task(np.random.default_rng(0), 256)
    for i, cell in enumerate(("lstm", "gru")):
        keras.utils.set_random_seed(i)
        cfg = ModelConfig(
            embedding_dim=16,
            encoder=EncoderConfig(cell=cell, units=32),
            decoder=DecoderConfig(cell=cell, units=32, num_layers=2),
        )
        model = build_model(dataclasses.asdict(cfg), VOCAB, VOCAB, seed=i)
        compile_model(model, 1e-2, 1.0, 0.0)
        model.fit((src, tgt_in), tgt_out, epochs=3, batch_size=32, verbose=0)
        out[cell] = (model, Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID))
    return out


@pytest.fixture(scope="module")
def batch():
    """A test batch: sources [16, S] and per-sentence max lengths (source length + 2)."""
    src, _, _ = reverse_task(np.random.default_rng(1), 16)
    return src, (src_lengths(src) + 2).astype(np.int32)


class ToyAttention:
    """A plain-TensorFlow model with the search interface and unusual shapes.

    encode -> outputs [B, S, U], mask [B, S], states [h [B, U], extra [B, 2, 3]];
    decode_step attends over encoder.outputs with encoder.mask.
    """

    def __init__(self, vocab: int = 12, units: int = 8, seed: int = 0, scale: float = 3.0):
        rng = np.random.default_rng(seed)
        self.emb = tf.constant(rng.normal(size=(vocab, units)), tf.float32)
        self.w = tf.constant(0.5 * rng.normal(size=(units, units)), tf.float32)
        self.v = tf.constant(0.5 * rng.normal(size=(6, units)), tf.float32)
        self.out = tf.constant(scale * rng.normal(size=(units, vocab)), tf.float32)

    def encode(self, src_ids, training: bool = False) -> EncoderOutput:
        mask = tf.not_equal(src_ids, 0)
        outputs = tf.tanh(tf.gather(self.emb, src_ids)) * tf.cast(mask, tf.float32)[:, :, None]
        count = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32), 1, keepdims=True), 1.0)
        mean = tf.reduce_sum(outputs, 1) / count
        return EncoderOutput(outputs, mask, [mean, tf.reshape(mean[:, :6], [-1, 2, 3])])

    def decode_step(self, tokens, states, encoder: EncoderOutput, training: bool = False):
        h, extra = states
        h = tf.tanh(tf.gather(self.emb, tokens) + h @ self.w + tf.reshape(extra, [-1, 6]) @ self.v)
        att = tf.einsum("bsu,bu->bs", encoder.outputs, h)
        att = tf.nn.softmax(tf.where(encoder.mask, att, -1e9), axis=-1)
        ctx = tf.einsum("bs,bsu->bu", att, encoder.outputs)
        extra = 0.9 * extra + 0.1 * tf.reshape(h[:, :6], [-1, 2, 3])
        return (h + ctx) @ self.out, [h, extra]


def assert_same(a: list[list[Hypothesis]], b: list[list[Hypothesis]], exact: bool = False) -> None:
    assert len(a) == len(b)
    for ha, hb in zip(a, b, strict=True):
        assert [h.tokens for h in ha] == [h.tokens for h in hb]
        for x, y in zip(ha, hb, strict=True):
            if exact:
                assert (x.score, x.normalized_score) == (y.score, y.normalized_score)
            else:
                assert x.score == pytest.approx(y.score, abs=1e-5)
                assert x.normalized_score == pytest.approx(y.normalized_score, abs=1e-5)


# --------------------------------------------------------------------------- beam 1 == greedy


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("min_length", [0, 3])
def test_beam_size_one_is_greedy(models, batch, cell, min_length):
    _, searcher = models[cell]
    src, max_len = batch
    max_len = max_len.copy()
    max_len[:3] = [0, 1, 2]  # forced EOS, also before min_length
    greedy = searcher.greedy(src, max_len, min_length=min_length)
    beam = searcher.beam(src, max_len, beam_size=1, min_length=min_length)
    via_search = searcher.search(src, max_len, beam_size=1, min_length=min_length)
    for g, b, s in zip(greedy, beam, via_search, strict=True):
        assert len(b) == 1 and len(s) == 1
        assert b[0].tokens == g.tokens == s[0].tokens
        assert b[0].score == g.score == s[0].score  # exactly
        assert b[0].normalized_score == g.normalized_score == g.score


def test_ties_pick_the_lowest_id(models):
    """All logits tied except a few equal maxima: greedy and beam both pick the lowest id."""
    model, searcher = models["lstm"]  # weights are variables: no retracing needed
    kernel, bias = model.output_projection.get_weights()
    src, max_len = np.array([[5, 6, 7]], np.int32), np.array([4], np.int32)
    try:
        for tied, expected in (([9, 5, 12], [5, 5, 5, 5]), ([7, EOS_ID, 4], [])):
            new_bias = np.zeros_like(bias)
            new_bias[tied] = 1.0
            model.output_projection.set_weights([np.zeros_like(kernel), new_bias])
            assert searcher.greedy(src, max_len)[0].tokens == expected
            assert searcher.beam(src, max_len, beam_size=1)[0][0].tokens == expected
            assert searcher.beam(src, max_len, beam_size=BEAM)[0][0].tokens == expected
    finally:
        model.output_projection.set_weights([kernel, bias])


@pytest.mark.parametrize("vocab", [1000, 1003])
def test_two_stage_top_k_equals_top_k(vocab):
    rng = np.random.default_rng(vocab)
    x = rng.integers(-20, 3, size=(7, vocab)).astype(np.float32)  # many ties
    x[0] = 0.0  # all tied
    x[1, -2:] = 5.0  # best entries in the padded last block
    for k in (1, 3, 6):
        got = top_k_lowest_first(tf.constant(x), k, block=16)
        want = tf.math.top_k(tf.constant(x), k)
        np.testing.assert_array_equal(got[0].numpy(), want[0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), want[1].numpy())


# --------------------------------------------------------------------------- beam search quality


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_beam_scores_are_model_scores_and_beat_greedy(models, batch, cell):
    model, searcher = models[cell]
    src, max_len = batch
    greedy = searcher.greedy(src, max_len)
    beams = searcher.beam(src, max_len, beam_size=BEAM, n_best=BEAM)
    forced = teacher_forced_scores(model, src, beams)
    improved = 0
    for g, hyps, recomputed in zip(greedy, beams, forced, strict=True):
        assert len(hyps) == BEAM
        assert hyps[0].score >= g.score - SCORE_ATOL
        improved += hyps[0].score > g.score + SCORE_ATOL
        for h, score in zip(hyps, recomputed, strict=True):
            assert h.normalized_score == h.score  # no length penalty
            assert h.score == pytest.approx(score, abs=SCORE_ATOL)
    assert improved > 0  # the models are not so peaked that beam search is pointless


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_n_best_sorted_and_distinct(models, batch, alpha):
    _, searcher = models["lstm"]
    src, max_len = batch
    for n_best in (1, 3):
        beams = searcher.search(src, max_len, beam_size=BEAM, n_best=n_best, length_penalty=alpha)
        assert len(beams) == len(src)
        for hyps in beams:
            assert len(hyps) == n_best
            norm = [h.normalized_score for h in hyps]
            assert norm == sorted(norm, reverse=True)
            assert len({tuple(h.tokens) for h in hyps}) == n_best


@pytest.mark.parametrize("alpha", [0.6, 1.5])
def test_length_penalty_normalisation(models, batch, alpha):
    model, searcher = models["gru"]
    src, max_len = batch
    beams = searcher.search(src, max_len, beam_size=BEAM, n_best=BEAM, length_penalty=alpha)
    for hyps, recomputed in zip(beams, teacher_forced_scores(model, src, beams), strict=True):
        for h, score in zip(hyps, recomputed, strict=True):
            assert h.normalized_score == pytest.approx(
                h.score / lp(len(h.tokens) + 1, alpha), rel=1e-5
            )
            assert h.score == pytest.approx(score, abs=SCORE_ATOL)
    # Greedy reports the normalised score for the given penalty too.
    for h in searcher.search(src, max_len, beam_size=1, length_penalty=alpha):
        assert h[0].normalized_score == pytest.approx(h[0].score / lp(len(h[0].tokens) + 1, alpha))


@pytest.mark.parametrize("alpha,reward", [(0.0, 0.5), (1.0, 1.0), (0.6, -0.3)])
def test_word_reward_normalisation(models, batch, alpha, reward):
    model, searcher = models["gru"]
    src, max_len = batch
    options = dict(beam_size=BEAM, n_best=BEAM, length_penalty=alpha, word_reward=reward)
    beams = searcher.search(src, max_len, **options)
    for hyps, recomputed in zip(beams, teacher_forced_scores(model, src, beams), strict=True):
        norm = [h.normalized_score for h in hyps]
        assert norm == sorted(norm, reverse=True)
        for h, score in zip(hyps, recomputed, strict=True):
            n = len(h.tokens) + 1
            assert h.normalized_score == pytest.approx(
                (h.score + reward * n) / lp(n, alpha), rel=1e-5
            )
            assert h.score == pytest.approx(score, abs=SCORE_ATOL)
    for h in searcher.search(src, max_len, beam_size=1, length_penalty=alpha, word_reward=reward):
        n = len(h[0].tokens) + 1
        assert h[0].normalized_score == pytest.approx((h[0].score + reward * n) / lp(n, alpha))


def test_word_reward_lengthens_beam_output():
    toy = ToyAttention(vocab=12, units=8, seed=6, scale=1.0)
    searcher = Searcher(toy, bos_id=BOS_ID, eos_id=EOS_ID)
    rng = np.random.default_rng(6)
    src = pad_batch([list(rng.integers(4, 12, size=k)) for k in rng.integers(2, 8, size=24)])
    max_len = np.full(len(src), 12, np.int32)

    def total_length(reward: float) -> int:
        beams = searcher.beam(src, max_len, beam_size=4, word_reward=reward)
        return sum(len(hyps[0].tokens) for hyps in beams)

    lengths = [total_length(r) for r in (-1.0, 0.0, 1.0, 3.0)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]
    assert total_length(100.0) == 12 * len(src)  # every output as long as allowed


@pytest.mark.parametrize(
    "alpha,reward", [(0.0, 0.0), (1.0, 0.0), (0.0, 1.5), (1.0, 0.8), (0.5, -0.7)]
)
def test_wide_beam_is_exhaustive_search(alpha, reward):
    """With a beam wider than the number of outputs, beam search must return the exact best
    outputs under the normalised score, found by enumerating every output (vocabulary 6, at most
    3 tokens before EOS) and scoring it step by step."""
    vocab, max_tokens = 6, 3
    toy = ToyAttention(vocab=vocab, units=8, seed=7, scale=1.5)
    src = pad_batch([[4, 5, 1], [5, 2]])
    outputs = [()]
    for n in range(1, max_tokens + 1):
        outputs += [
            o + (t,) for o in outputs if len(o) == n - 1 for t in range(vocab) if t != EOS_ID
        ]
    expected = []
    for row in range(len(src)):
        enc = toy.encode(tf.constant(src[row : row + 1].repeat(len(outputs), 0), tf.int32))
        tokens = np.array([[BOS_ID, *o] + [0] * (max_tokens - len(o)) for o in outputs], np.int32)
        states, logps = enc.states, []
        for t in range(max_tokens + 1):
            logits, states = toy.decode_step(tf.constant(tokens[:, t]), states, enc)
            logps.append(tf.nn.log_softmax(logits).numpy())
        scored = []
        for j, o in enumerate(outputs):
            seq = [*o, EOS_ID]
            score = sum(float(logps[t][j, y]) for t, y in enumerate(seq))
            scored.append(((score + reward * len(seq)) / lp(len(seq), alpha), list(o), score))
        expected.append(sorted(scored, key=lambda x: -x[0])[:3])
    searcher = Searcher(toy, bos_id=BOS_ID, eos_id=EOS_ID)
    beams = searcher.beam(
        src,
        np.full(len(src), max_tokens, np.int32),
        beam_size=len(outputs),
        n_best=3,
        length_penalty=alpha,
        word_reward=reward,
    )
    for want, got in zip(expected, beams, strict=True):
        assert [h.tokens for h in got] == [w[1] for w in want]
        for h, w in zip(got, want, strict=True):
            assert h.normalized_score == pytest.approx(w[0], abs=1e-4)
            assert h.score == pytest.approx(w[2], abs=1e-4)


# --------------------------------------------------------------------------- lengths and batching


@pytest.mark.parametrize("min_length", [0, 3])
def test_max_and_min_lengths(models, batch, min_length):
    _, searcher = models["lstm"]
    src, _ = batch
    max_len = (np.arange(len(src)) % 6).astype(np.int32)  # 0..5
    beams = searcher.beam(src, max_len, beam_size=BEAM, n_best=BEAM, min_length=min_length)
    for m, hyps in zip(max_len, beams, strict=True):
        if m == 0:  # only the empty output exists
            assert [h.tokens for h in hyps] == [[]]
            continue
        assert len(hyps) == BEAM
        for h in hyps:
            assert len(h.tokens) <= m
            assert len(h.tokens) >= min(min_length, m)
    assert any(
        len(h.tokens) == m for m, hyps in zip(max_len, beams, strict=True) for h in hyps if m > 0
    )


@pytest.mark.parametrize("beam_size,alpha", [(1, 0.0), (BEAM, 0.0), (BEAM, 0.8)])
def test_batch_composition_does_not_matter(models, batch, beam_size, alpha):
    _, searcher = models["lstm"]
    src, max_len = batch
    options = dict(beam_size=beam_size, n_best=beam_size, length_penalty=alpha, min_length=1)
    lengths = src_lengths(src)
    order = np.random.default_rng(2).permutation(len(src))[:7]
    wide = np.pad(src[order], [(0, 0), (0, 3)])  # extra padding, other neighbours
    together = searcher.beam(wide, max_len[order], **options)
    for i, hyps in zip(order, together, strict=True):
        alone = searcher.beam(src[i : i + 1, : lengths[i]], max_len[i : i + 1], **options)
        assert_same(alone, [hyps])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("min_length", [0, 3])
@pytest.mark.parametrize("slots", [1, 3, 5])
def test_refilled_greedy_equals_fixed_batches(models, batch, cell, min_length, slots):
    """`slots`: the model steps `slots` rows and a row takes the next sentence when its own ends.
    Tokens and scores are exactly those of fixed batches of `slots` sentences (the same encoder
    batches and step shapes), and those of one batch up to float rounding (lengths 0, 1 and 2
    end at once)."""
    _, searcher = models[cell]
    src, max_len = batch
    max_len = max_len.copy()
    max_len[[0, 5, 9]] = [0, 1, 2]
    order = np.argsort(-src_lengths(src), kind="stable")  # as the Translator sorts them
    src, max_len = src[order], max_len[order]
    refilled = searcher.greedy(src, max_len, min_length=min_length, slots=slots)
    fixed = []
    for i in range(0, len(src), slots):
        rows = src[i : i + slots, : src_lengths(src[i : i + slots]).max()]
        fixed += searcher.greedy(rows, max_len[i : i + slots], min_length=min_length)
    assert_same([[h] for h in fixed], [[h] for h in refilled], exact=True)
    whole = searcher.greedy(src, max_len, min_length=min_length)
    assert_same([[h] for h in whole], [[h] for h in refilled])
    via_search = searcher.search(src, max_len, min_length=min_length, slots=slots)
    assert_same([[h] for h in refilled], via_search, exact=True)


def test_refilled_greedy_of_a_generic_model_and_an_ensemble():
    """Memory of any rank is padded along the source axis between chunks of different widths;
    states of any shape are refilled; an ensemble's nests of nests too. With XLA the sentences are
    padded to a power of two and the outputs are the same."""
    from translator.decoding.ensemble import EnsembleStepModel

    rng = np.random.default_rng(6)
    # unsorted on purpose: chunks of 2 rows with widths 7, 3 and 6
    src = pad_batch([list(rng.integers(4, 12, size=k)) for k in (7, 2, 3, 1, 6, 4)])
    max_len = np.array([6, 3, 8, 0, 5, 7], np.int32)
    for model in (ToyAttention(), EnsembleStepModel([ToyAttention(), ToyAttention(seed=1)])):
        searcher = Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID)
        whole = [[h] for h in searcher.greedy(src, max_len, min_length=2)]
        refilled = [[h] for h in searcher.greedy(src, max_len, min_length=2, slots=2)]
        assert_same(whole, refilled)
        compiled = [[h] for h in searcher.greedy(src, max_len, min_length=2, slots=4, xla=True)]
        assert_same(whole, compiled)


# --------------------------------------------------------------------------- generic model interface


def test_generic_encoder_and_states():
    toy = ToyAttention()
    searcher = Searcher(toy, bos_id=BOS_ID, eos_id=EOS_ID)
    rng = np.random.default_rng(3)
    src = pad_batch([list(rng.integers(4, 12, size=k)) for k in (5, 2, 7, 3, 4)])
    max_len = np.array([6, 3, 8, 0, 5], np.int32)
    greedy = searcher.greedy(src, max_len, min_length=2)
    beam1 = searcher.beam(src, max_len, beam_size=1, min_length=2)
    assert_same([[g] for g in greedy], beam1, exact=True)
    beams = searcher.beam(src, max_len, beam_size=3, n_best=3, length_penalty=0.5)
    for i in range(len(src)):
        alone = searcher.beam(
            src[i : i + 1, : src_lengths(src)[i]],
            max_len[i : i + 1],
            beam_size=3,
            n_best=3,
            length_penalty=0.5,
        )
        assert_same(alone, beams[i : i + 1])


def test_two_stage_top_k_inside_beam_search(monkeypatch):
    """The blocked top-k path (large vocabularies) gives the same search results."""
    toy = ToyAttention(vocab=600, units=8, seed=4, scale=1.0)
    rng = np.random.default_rng(4)
    src = pad_batch([list(rng.integers(4, 600, size=k)) for k in (5, 2, 7)])
    max_len = np.array([6, 3, 8], np.int32)
    options = dict(beam_size=3, n_best=3, length_penalty=0.5)
    plain = Searcher(toy, bos_id=BOS_ID, eos_id=EOS_ID).beam(src, max_len, **options)
    monkeypatch.setattr(search_module, "TOPK_BLOCKED_MIN_VOCAB", 0)
    monkeypatch.setattr(search_module, "TOPK_BLOCK", 8)
    blocked = Searcher(toy, bos_id=BOS_ID, eos_id=EOS_ID).beam(src, max_len, **options)
    assert_same(plain, blocked, exact=True)


@pytest.mark.parametrize("sentences", [3, 16])
def test_tied_projection_kernel_computed_once_per_loop_changes_no_bit(sentences):
    """Search computes a tied projection's kernel once per loop (`Seq2SeqStepModel.stepper`):
    the same tokens and scores, to the bit, as computing it at every step (fewer than 16 rows,
    3 sentences greedy, and more, 16 greedy and 64 beam rows, take different products)."""
    keras.utils.set_random_seed(3)
    cfg = ModelConfig(
        embedding_dim=32,
        encoder=EncoderConfig(cell="lstm", units=16, bidirectional=True),
        decoder=DecoderConfig(cell="lstm", units=32, attention="luong", input_feeding=False),
        tied_softmax=True,
    )
    model = build_model(dataclasses.asdict(cfg), VOCAB, 600, seed=3)
    rng = np.random.default_rng(5)
    src = pad_batch([list(rng.integers(4, VOCAB, size=k)) for k in rng.integers(2, 9, sentences)])
    max_len = (src_lengths(src) + 3).astype(np.int32)
    results = []
    for per_step in (False, True):
        if per_step:  # the kernel is then E^T inside the projection, at every step
            model.output_kernel = lambda: None
        searcher = Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID)
        results.append(
            (
                [[h] for h in searcher.greedy(src, max_len)],
                searcher.beam(src, max_len, beam_size=BEAM, n_best=2, length_penalty=1.0),
            )
        )
    del model.output_kernel
    for once, every_step in zip(*results, strict=True):
        assert_same(once, every_step, exact=True)


def test_the_kernel_is_computed_once_only_in_float32():
    """Under a mixed policy (training's validation decoding) the bfloat16 products with a
    transposed kernel round differently (78 of 1,000 greedy outputs of a flagship-shaped model
    changed), so a mixed-precision model keeps the per-step product: validation scores, and the
    model they select, stay as they were."""
    cfg = dataclasses.asdict(
        ModelConfig(
            embedding_dim=32,
            encoder=EncoderConfig(cell="lstm", units=16),
            decoder=DecoderConfig(cell="lstm", units=32),
            tied_softmax=True,
        )
    )
    assert build_model(cfg, VOCAB, 40, seed=1).output_kernel() is not None
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        with warnings.catch_warnings():
            # (Keras warned here that the projection "will destroy the mask information".)
            warnings.simplefilter("error", UserWarning)
            mixed = build_model(cfg, VOCAB, 40, seed=1)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert mixed.compute_dtype == "bfloat16" and mixed.output_kernel() is None


# --------------------------------------------------------------------------- API


def test_traced_once_per_beam_size():
    searcher = Searcher(ToyAttention(), bos_id=BOS_ID, eos_id=EOS_ID)
    rng = np.random.default_rng(5)
    for b, s in ((1, 3), (4, 6), (2, 9)):
        src = rng.integers(4, 12, size=(b, s)).astype(np.int32)
        searcher.search(
            src,
            np.full(b, 4, np.int32),
            beam_size=3,
            n_best=2,
            length_penalty=0.1 * b,
            min_length=b,
        )
        searcher.search(src, np.full(b, 4, np.int32), beam_size=1, min_length=b)
    assert searcher._beam_function(3).experimental_get_tracing_count() == 1
    assert searcher._greedy_function().experimental_get_tracing_count() == 1


def test_options_are_validated():
    searcher = Searcher(ToyAttention(), bos_id=BOS_ID, eos_id=EOS_ID)
    src, max_len = np.array([[4, 5]], np.int32), np.array([3], np.int32)
    with pytest.raises(ValueError, match="n_best"):
        searcher.search(src, max_len, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="beam_size"):
        searcher.search(src, max_len, beam_size=0)
    with pytest.raises(ValueError, match="length_penalty"):
        searcher.search(src, max_len, beam_size=2, length_penalty=-1.0)
    assert searcher.search(np.zeros((0, 3), np.int32), np.zeros(0, np.int32), beam_size=2) == []


def test_hypothesis_defaults():
    assert Hypothesis([4], -1.5).normalized_score == -1.5
    assert Hypothesis([4], -1.5, -1.0).normalized_score == -1.0


# --------------------------------------------------------------------------- XLA


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_xla_compiled_search_finds_the_same_outputs(models, batch, cell):
    """`xla=True` (sources padded to a multiple of 8, loops compiled by XLA) finds the same
    hypotheses as the graph loops, greedy and beam, with scores equal up to float rounding."""
    _, searcher = models[cell]
    src, max_len = batch
    assert src.shape[1] % 8 != 0  # the XLA path pads
    for options in (
        {"beam_size": 1, "min_length": 2},
        {"beam_size": BEAM, "n_best": 2, "length_penalty": 1.0, "word_reward": 0.5},
    ):
        plain = searcher.search(src, max_len, **options)
        compiled = searcher.search(src, max_len, xla=True, **options)
        assert_same(plain, compiled)
    assert searcher._greedy_function(xla=True) is not searcher._greedy_function()
