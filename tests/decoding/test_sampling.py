"""Tests for translator.decoding.sampling: random sampling decoding in a compiled loop.

A small LSTM model and a GRU model are trained for a few steps on a reverse-the-sequence task
(as in test_search.py); a fixed-distribution step model checks the sampled frequencies.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402
import shutil  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.config import (  # noqa: E402
    ConfigError,
    DecodeConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    config_from_dict,
)
from translator.data.batching import pad_batch  # noqa: E402
from translator.data.tokenizers import BOS_ID, EOS_ID  # noqa: E402
from translator.decoding.ensemble import EnsembleStepModel  # noqa: E402
from translator.decoding.sampling import Sampler, sentence_keys  # noqa: E402
from translator.decoding.search import BLOCKED, Searcher  # noqa: E402
from translator.models import build_model, compile_model  # noqa: E402

VOCAB = 16


def reverse_task(rng: np.random.Generator, n: int, min_len: int = 2, max_len: int = 8):
    src = [list(rng.integers(4, VOCAB, size=k)) for k in rng.integers(min_len, max_len, size=n)]
    tgt = [s[::-1] for s in src]
    return (
        pad_batch(src),
        pad_batch([[BOS_ID, *t] for t in tgt]),
        pad_batch([[*t, EOS_ID] for t in tgt]),
    )


@pytest.fixture(scope="module")
def models() -> dict:
    """{cell: model} for an LSTM and a GRU model trained briefly on the reverse task."""
    out = {}
    src, tgt_in, tgt_out = reverse_task(np.random.default_rng(0), 256)
    for i, cell in enumerate(("lstm", "gru")):
        keras.utils.set_random_seed(i)
        cfg = ModelConfig(
            embedding_dim=16,
            encoder=EncoderConfig(cell=cell, units=32),
            decoder=DecoderConfig(cell=cell, units=32),
        )
        model = build_model(dataclasses.asdict(cfg), VOCAB, VOCAB, seed=i)
        compile_model(model, 1e-2, 1.0, 0.0)
        model.fit((src, tgt_in), tgt_out, epochs=2, batch_size=32, verbose=0)
        out[cell] = model
    return out


@pytest.fixture(scope="module")
def batch():
    """Sources [24, S] and their maximum output lengths (source length + 2)."""
    src, _, _ = reverse_task(np.random.default_rng(1), 24)
    return src, ((src != 0).sum(axis=1) + 2).astype(np.int32)


def tokens(hyps) -> list[list[int]]:
    return [h.tokens for h in hyps]


@pytest.mark.parametrize("min_length", [0, 3])
def test_top_1_is_greedy_search(models, batch, min_length):
    """`topk=1` runs the sampling loop, and gives greedy's tokens and scores bit for bit."""
    src, max_len = batch
    for model in models.values():
        greedy = Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID).greedy(
            src, max_len, min_length=min_length
        )
        sampler = Sampler(model, bos_id=BOS_ID, eos_id=EOS_ID)
        for seed in (1, 2):
            sampled = sampler.sample(src, max_len, topk=1, seed=seed, min_length=min_length)
            assert tokens(sampled) == tokens(greedy)
            assert [h.score for h in sampled] == [h.score for h in greedy]


def test_a_very_low_temperature_is_greedy_search(models, batch):
    src, max_len = batch
    model = models["lstm"]
    greedy = Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID).greedy(src, max_len)
    sampled = Sampler(model, bos_id=BOS_ID, eos_id=EOS_ID).sample(
        src, max_len, topk=0, temperature=1e-4, seed=3
    )
    assert tokens(sampled) == tokens(greedy)
    np.testing.assert_allclose([h.score for h in sampled], [h.score for h in greedy], atol=1e-5)


def test_a_seed_decides_the_samples_whatever_the_batch(models, batch):
    src, max_len = batch
    sampler = Sampler(models["lstm"], bos_id=BOS_ID, eos_id=EOS_ID)
    options = dict(topk=0, temperature=1.5)
    first = sampler.sample(src, max_len, seed=7, **options)
    assert tokens(sampler.sample(src, max_len, seed=7, **options)) == tokens(first)
    assert tokens(sampler.sample(src, max_len, seed=8, **options)) != tokens(first)
    # A sentence alone, or in another order, is sampled as in the batch (its key is its own).
    order = np.arange(len(src))[::-1]
    reordered = sampler.sample(src[order], max_len[order], seed=7, **options)
    assert tokens(reordered) == tokens(first)[::-1]
    row = src[3:4, : int((src[3] != 0).sum())]
    alone = sampler.sample(row, max_len[3:4], seed=7, **options)
    assert alone[0].tokens == first[3].tokens
    # Sampling explores: a flat temperature gives outputs that greedy search does not.
    greedy = Searcher(models["lstm"], bos_id=BOS_ID, eos_id=EOS_ID).greedy(src, max_len)
    assert tokens(first) != tokens(greedy)


def _ranks_and_scores(model, src, max_len, hyps, min_length):
    """Per hypothesis: the rank of each output token (EOS included) among the model's
    log-probabilities at its step, after the length rules (NumPy), and the sum of its
    log-probabilities (teacher-forced)."""
    tgt_in = pad_batch([[BOS_ID, *h.tokens] for h in hyps])
    logits = model((tf.constant(src), tf.constant(tgt_in)), training=False)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    ranks, scores = [], []
    for b, h in enumerate(hyps):
        out = [*h.tokens, EOS_ID]
        total = 0.0
        for t, y in enumerate(out):
            lp = log_probs[b, t].copy()
            if t < min_length:
                lp[EOS_ID] = BLOCKED
            if t >= max_len[b]:
                lp[np.arange(len(lp)) != EOS_ID] = -np.inf
            # Rank with ties to the lower id, as top-k does.
            ranks.append(int(np.sum(lp > lp[y]) + np.sum((lp == lp[y])[:y])))
            total += float(lp[y])
        scores.append(total)
    return np.array(ranks), np.array(scores)


@pytest.mark.parametrize("topk", [2, 3])
def test_top_k_only_emits_the_k_most_likely_tokens(models, batch, topk):
    src, max_len = batch
    model = models["gru"]
    sampler = Sampler(model, bos_id=BOS_ID, eos_id=EOS_ID)
    ranks = []
    for seed in range(4):
        hyps = sampler.sample(src, max_len, topk=topk, temperature=3.0, seed=seed, min_length=1)
        r, scores = _ranks_and_scores(model, src, max_len, hyps, min_length=1)
        ranks.append(r)
        # The score is the model's own log-probability of the output (no temperature).
        np.testing.assert_allclose([h.score for h in hyps], scores, atol=1e-4)
    ranks = np.concatenate(ranks)
    assert ranks.max() == topk - 1  # every one of the top K is drawn, nothing below
    # Without the top-k filter, the same temperature draws tokens outside the top K.
    hyps = sampler.sample(src, max_len, topk=0, temperature=3.0, seed=0, min_length=1)
    assert _ranks_and_scores(model, src, max_len, hyps, min_length=1)[0].max() >= topk


class FixedDistribution:
    """A step model whose every step gives the same log-probabilities to every row."""

    def __init__(self, log_probs: np.ndarray):
        self.log_probs = tf.constant(log_probs, tf.float32)

    def start(self, src_ids):
        return (), [tf.zeros([tf.shape(src_ids)[0], 1])]

    def step(self, tokens, state, memory):
        return tf.tile(self.log_probs[None, :], [tf.shape(tokens)[0], 1]), state


@pytest.mark.parametrize(("topk", "temperature"), [(0, 1.0), (0, 2.0), (0, 0.5), (3, 1.0)])
def test_sampled_frequencies_follow_the_distribution(topk, temperature):
    """The first token of 6,000 sentences (distinct sources, so distinct keys) is drawn with
    `softmax(log_probs / temperature)` restricted to the top K: frequencies within 4.5 standard
    errors."""
    probs = np.array([0.05, 0.10, 0.02, 0.13, 0.30, 0.40])  # EOS (3) among them
    log_probs = np.log(probs)
    n = 6000
    src = np.random.default_rng(0).integers(4, 1000, size=(n, 6)).astype(np.int32)
    sampler = Sampler(FixedDistribution(log_probs), bos_id=BOS_ID, eos_id=EOS_ID)
    hyps = sampler.sample(src, np.ones(n, np.int32), topk=topk, temperature=temperature, seed=1)
    first = np.array([h.tokens[0] if h.tokens else EOS_ID for h in hyps])
    freq = np.bincount(first, minlength=len(probs)) / n
    want = np.exp(log_probs / temperature)
    if topk:
        want[np.argsort(-log_probs)[topk:]] = 0.0
    want /= want.sum()
    assert np.all(freq[want == 0] == 0)
    assert np.all(np.abs(freq - want) <= 4.5 * np.sqrt(want * (1 - want) / n) + 1e-12)
    # The scores are the model's log-probabilities: the first token's, then a forced EOS.
    for h, y in zip(hyps[:50], first[:50], strict=True):
        expected = log_probs[y] + (log_probs[EOS_ID] if y != EOS_ID else 0.0)
        assert h.score == pytest.approx(expected, abs=1e-5)


def test_sentence_keys():
    src = pad_batch([[5, 6, 7], [5, 6], [5, 6, 7]])
    keys = sentence_keys(src, 9)
    assert keys.dtype == np.int64 and keys.shape == (3, 2)
    assert np.all(keys[:, 0] == 9) and np.all(keys >= 0)
    assert keys[0, 1] == keys[2, 1] != keys[1, 1]  # padding is not part of a sentence
    assert np.array_equal(sentence_keys(pad_batch([[5, 6]]), 9)[0], keys[1])
    for bad in (-1, 2**63, 1.5, True, "1"):
        with pytest.raises(ValueError, match="seed"):
            sentence_keys(src, bad)


def test_an_ensemble_samples(models, batch):
    src, max_len = batch
    lstm, gru = models["lstm"], models["gru"]
    options = dict(topk=4, temperature=1.2, seed=5)
    # A model with itself: the mean of two equal log-probabilities is that log-probability.
    same = Sampler(EnsembleStepModel([lstm, lstm]), bos_id=BOS_ID, eos_id=EOS_ID)
    single = Sampler(lstm, bos_id=BOS_ID, eos_id=EOS_ID)
    got, want = same.sample(src, max_len, **options), single.sample(src, max_len, **options)
    assert tokens(got) == tokens(want)
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)
    # Two models: top 1 is the ensemble's greedy search.
    pair = EnsembleStepModel([lstm, gru])
    greedy = Searcher(pair, bos_id=BOS_ID, eos_id=EOS_ID).greedy(src, max_len)
    sampled = Sampler(pair, bos_id=BOS_ID, eos_id=EOS_ID).sample(src, max_len, topk=1)
    assert tokens(sampled) == tokens(greedy)


def test_traced_once_per_top_k(models, batch):
    src, max_len = batch
    sampler = Sampler(models["lstm"], bos_id=BOS_ID, eos_id=EOS_ID)
    for temperature, seed, rows in ((1.0, 1, 24), (0.7, 2, 5), (2.0, 3, 11)):
        sampler.sample(src[:rows], max_len[:rows], topk=5, temperature=temperature, seed=seed)
    assert list(sampler._functions) == [5]
    assert sampler._functions[5].experimental_get_tracing_count() == 1


# -- options --------------------------------------------------------------------------------------


def test_options_are_validated():
    assert DecodeConfig().sampling_topk == 1 and DecodeConfig().sampling_temperature == 1.0
    for kwargs, key in (
        (dict(sampling_topk=-1), "decode.sampling_topk"),
        (dict(sampling_topk=2.5), "decode.sampling_topk"),
        (dict(sampling_temperature=0.0), "decode.sampling_temperature"),
        (dict(sampling_temperature=float("nan")), "decode.sampling_temperature"),
    ):
        with pytest.raises(ConfigError, match=key):
            DecodeConfig(**kwargs)
    with pytest.raises(ConfigError, match=r"decode\.sampling_topk.*decode\.beam_size 4"):
        DecodeConfig(sampling_topk=0, beam_size=4)
    # Old configs, without the keys, load with today's behaviour (greedy search).
    config = config_from_dict({"decode": {"beam_size": 3}})
    assert (config.decode.sampling_topk, config.decode.sampling_temperature) == (1, 1.0)
    with pytest.raises(ConfigError, match="decode.sampling_temperature"):
        config_from_dict({"decode": {"sampling_temperature": -1}})
    sampler = Sampler(FixedDistribution(np.zeros(6)), bos_id=BOS_ID, eos_id=EOS_ID)
    with pytest.raises(ConfigError, match="decode.sampling_temperature"):
        sampler.sample(pad_batch([[4]]), np.ones(1, np.int32), topk=0, temperature=0.0)


def test_asking_for_one_kind_of_decoding_drops_the_others_setting():
    beam = DecodeConfig(beam_size=5, n_best=3)
    sampled = beam.with_overrides(sampling_topk=10, batch_size=None)
    assert (sampled.beam_size, sampled.n_best, sampled.sampling_topk) == (1, 1, 10)
    assert beam.with_overrides(sampling_topk=1) == beam
    sampling = DecodeConfig(sampling_topk=0, sampling_temperature=0.8)
    searched = sampling.with_overrides(beam_size=4)
    assert (searched.beam_size, searched.sampling_topk) == (4, 1)
    assert searched.sampling_temperature == 0.8
    with pytest.raises(ConfigError, match=r"decode\.sampling_topk.*decode\.beam_size"):
        beam.with_overrides(beam_size=4, sampling_topk=3)


# -- Translator and command line ---------------------------------------------------------------


def _sources(run, n=16):
    lines = (run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[:n]] + [""]


def test_translator_samples(tiny_attention_run, tmp_path):
    from translator.translate import Translator

    t = Translator.load(tiny_attention_run)
    sources = _sources(tiny_attention_run)
    assert t.translate(sources, sampling_topk=1, seed=4) == t.translate(sources)
    sampled = t.translate(sources, sampling_topk=0, sampling_temperature=1.5, seed=4)
    assert sampled[-1] == ""  # an empty input gives an empty output
    assert sampled != t.translate(sources)
    again = t.translate(sources, sampling_topk=0, sampling_temperature=1.5, seed=4, batch_size=3)
    assert again == sampled
    assert t.translate(sources, sampling_topk=0, sampling_temperature=1.5, seed=5) != sampled
    assert t.translate(sources[0], sampling_topk=0, sampling_temperature=1.5, seed=4) == sampled[0]
    # With the scores of the samples: the sums of their log-probabilities.
    nbest = t.translate_nbest(sources[:3], sampling_topk=0, sampling_temperature=1.5, seed=4)
    assert [row[0][0] for row in nbest] == sampled[:3]
    hyps = t.translate_hypotheses(sources[:3], sampling_topk=0, sampling_temperature=1.5, seed=4)
    assert [row[0][1] for row in nbest] == [h[0].score for h in hyps]
    # A run configured for beam search samples when asked to.
    t.decode = dataclasses.replace(t.decode, beam_size=4, n_best=2)
    assert t.translate(sources, sampling_topk=0, sampling_temperature=1.5, seed=4) == sampled
    with pytest.raises(ConfigError, match="decode.beam_size 3"):
        t.translate(sources, beam_size=3, sampling_topk=5)
    with pytest.raises(ValueError, match="seed"):
        t.translate(sources, sampling_topk=5, seed=-2)
    # The config's decode section may ask for sampling.
    t.decode = DecodeConfig(sampling_topk=0, sampling_temperature=1.5)
    assert t.translate(sources, seed=4) == sampled
    # An ensemble of a model with itself samples as the model.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_attention_run, copy)
    ensemble = Translator.load([tiny_attention_run, copy])
    assert ensemble.translate(sources, sampling_topk=0, sampling_temperature=1.5, seed=4) == (
        sampled
    )


def test_cli_samples(tiny_attention_run):
    from tests.pipelines.helpers import cli
    from translator.translate import Translator

    sources = _sources(tiny_attention_run, 4)[:4]
    options = ["--sampling-topk", "5", "--sampling-temperature", "1.3", "--seed", "11"]
    r = cli("translate", tiny_attention_run, *sources, *options)
    assert r.returncode == 0, r.stderr
    want = Translator.load(tiny_attention_run).translate(
        sources, sampling_topk=5, sampling_temperature=1.3, seed=11
    )
    assert r.stdout.splitlines() == want
    for args, message in (
        (["--sampling-topk", "-1"], "decode.sampling_topk: must be 0"),
        (
            ["--sampling-temperature", "0"],
            "decode.sampling_temperature: must be a number from 1e-06",
        ),
        (["--sampling-topk", "5", "--beam-size", "3"], "decode.beam_size 3"),
    ):
        r = cli("translate", tiny_attention_run, sources[0], *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("translator: error: ") and message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = cli("translate", tiny_attention_run, sources[0], "--seed", "-1")
    assert r.returncode == 2 and "--seed: must be at least 0" in r.stderr
    assert "Traceback" not in r.stderr
