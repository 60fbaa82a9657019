"""Tests for attention (translator.attention and the attention decoder of translator.model).

Tiny untrained models: the properties checked (masking, padding invariance, teacher forcing ==
stepping, search, save/load, gradients) hold for any weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402
import functools  # noqa: E402
import re  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.config import (  # noqa: E402
    ConfigError,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    config_from_dict,
)
from translator.data.batching import pad_batch  # noqa: E402
from translator.data.tokenizers import BOS_ID, EOS_ID, WordTokenizer  # noqa: E402
from translator.decoding.search import Searcher  # noqa: E402
from translator.layers.attention import BahdanauAttention, LuongAttention  # noqa: E402
from translator.models import MaskedCrossEntropy, Seq2Seq, build_model  # noqa: E402
from translator.plots import plot_attention  # noqa: E402
from translator.translate import Translator  # noqa: E402

VOCAB = 20
ATOL = 1e-5

# Rows of different lengths, right-padded: [B=3, S=5] and targets [B=3, T=4] (BOS first).
SRC = np.array([[5, 6, 7, 8, 9], [4, 11, 12, 0, 0], [13, 0, 0, 0, 0]], np.int32)
TGT_IN = np.array([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 0, 0], [BOS_ID, 9, 10, 0]], np.int32)
TGT_OUT = np.array([[5, 6, 7, EOS_ID], [8, EOS_ID, 0, 0], [9, 10, EOS_ID, 0]], np.int32)

MECHANISMS = [("bahdanau", "general"), ("luong", "general"), ("luong", "dot")]


def model_config(
    attention: str = "bahdanau",
    score: str = "general",
    input_feeding: bool = True,
    dec_cell: str = "lstm",
    dec_layers: int = 1,
    enc_cell: str = "lstm",
    enc_layers: int = 1,
    bidirectional: bool = True,
    merge: str = "concat",
) -> dict:
    enc_units = 6 if bidirectional and merge == "concat" else 12  # encoder output size 12
    cfg = ModelConfig(
        embedding_dim=8,
        encoder=EncoderConfig(
            cell=enc_cell,
            num_layers=enc_layers,
            units=enc_units,
            bidirectional=bidirectional,
            merge=merge,
        ),
        decoder=DecoderConfig(
            cell=dec_cell,
            num_layers=dec_layers,
            units=12,
            attention=attention,
            attention_score=score,
            input_feeding=input_feeding,
        ),
    )
    return dataclasses.asdict(cfg)


@functools.cache
def make_model(**options) -> Seq2Seq:
    keras.utils.set_random_seed(7)
    return build_model(model_config(**options), VOCAB, VOCAB, seed=7)


def step_by_step(model: Seq2Seq, src: np.ndarray, tgt_in: np.ndarray):
    """Logits [B, T, V] and attention weights [B, T, S] from `decode_step[_with_attention]`."""
    encoder = model.encode(src)
    states = encoder.states
    logits, weights = [], []
    for t in range(tgt_in.shape[1]):
        _, states_plain = model.decode_step(tgt_in[:, t], states, encoder)
        step_logits, states, w = model.decode_step_with_attention(tgt_in[:, t], states, encoder)
        for a, b in zip(states_plain, states, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        logits.append(step_logits.numpy())
        weights.append(w.numpy())
    return np.stack(logits, 1), np.stack(weights, 1)


# --------------------------------------------------------------------------- the layers


@pytest.mark.parametrize("kind,score", MECHANISMS, ids=["bahdanau", "luong-general", "luong-dot"])
def test_weights_are_a_distribution_over_real_tokens_only(kind, score):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 5, 12)).astype("float32")
    query = rng.normal(size=(3, 12)).astype("float32")
    mask = SRC != 0
    layer = BahdanauAttention(10) if kind == "bahdanau" else LuongAttention(score)
    keys = None
    if kind == "bahdanau" or score == "general":
        layer.build((None, 12), (None, None, 12))
        keys = layer.project_keys(values)
    context, weights = layer(query, values, keys=keys, mask=mask)
    weights = weights.numpy()
    assert context.shape == (3, 12) and weights.shape == (3, 5)
    assert (weights >= 0).all()
    assert (weights[~mask] == 0).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(context, np.einsum("bs,bse->be", weights, values), atol=1e-5)

    # Through the model: exactly 0 at source padding, rows sum to 1 at real target steps.
    model = make_model(attention=kind, score=score)
    att = model.attention_weights(SRC, TGT_IN).numpy()  # [B, T, S]
    assert att.shape == (3, 4, 5) and (att >= 0).all()
    assert (att[np.broadcast_to(~mask[:, None, :], att.shape)] == 0).all()
    np.testing.assert_allclose(att.sum(-1)[TGT_IN != 0], 1.0, rtol=1e-6)


def test_luong_dot_needs_equal_sizes():
    with pytest.raises(ValueError, match="same size"):
        LuongAttention("dot").build((None, 8), (None, None, 12))
    with pytest.raises(ValueError, match="general, dot"):
        LuongAttention("cosine")


# --------------------------------------------------------------------------- the decoder

PADDING_COMBOS = [
    dict(attention=kind, input_feeding=feeding, dec_cell=cell)
    for kind in ("bahdanau", "luong")
    for feeding in (True, False)
    for cell in ("lstm", "gru")
]


def _id(options: dict) -> str:
    return "-".join(str(v) for v in options.values())


@pytest.mark.parametrize("options", PADDING_COMBOS, ids=[_id(o) for o in PADDING_COMBOS])
def test_extra_source_padding_changes_nothing(options):
    model = make_model(**options)
    padded = np.pad(SRC, [(0, 0), (0, 3)])
    np.testing.assert_allclose(
        model((padded, TGT_IN)).numpy(), model((SRC, TGT_IN)).numpy(), atol=ATOL
    )
    att, att_padded = model.attention_weights(SRC, TGT_IN), model.attention_weights(padded, TGT_IN)
    np.testing.assert_allclose(att_padded[:, :, :5], att, atol=ATOL)
    assert (att_padded.numpy()[:, :, 5:] == 0).all()


ENCODERS = [
    dict(enc_cell="rnn", bidirectional=False),
    dict(enc_cell="gru", enc_layers=2, bidirectional=False),
    dict(enc_cell="lstm", bidirectional=True, merge="concat"),
    dict(enc_cell="gru", bidirectional=True, merge="sum"),
    dict(enc_cell="rnn", bidirectional=True, merge="ave", enc_layers=2),
]
STEP_COMBOS = [
    dict(attention="bahdanau", dec_layers=2, **ENCODERS[0]),
    dict(attention="luong", dec_layers=2, input_feeding=False, **ENCODERS[1]),
    dict(attention="bahdanau", input_feeding=False, dec_cell="gru", **ENCODERS[2]),
    dict(attention="luong", score="dot", dec_cell="gru", dec_layers=2, **ENCODERS[3]),
    dict(attention="luong", **ENCODERS[4]),
    *PADDING_COMBOS[:2],
]


@pytest.mark.parametrize("options", STEP_COMBOS, ids=[_id(o) for o in STEP_COMBOS])
def test_teacher_forcing_equals_stepping(options):
    """The compiled teacher-forcing loop and `decode_step` share one core (any encoder)."""
    model = make_model(**options)
    logits, weights = step_by_step(model, SRC, TGT_IN)
    real = TGT_IN != 0  # padded target steps are not compared (their logits are unused)
    np.testing.assert_allclose(model((SRC, TGT_IN)).numpy()[real], logits[real], atol=ATOL)
    att = model.attention_weights(SRC, TGT_IN).numpy()
    np.testing.assert_allclose(att[real], weights[real], atol=ATOL)


PARALLEL_COMBOS = [
    dict(attention="luong", score=score, input_feeding=False, dec_cell=cell, dec_layers=layers)
    for score, cell, layers in [("general", "lstm", 1), ("dot", "gru", 2), ("general", "gru", 2)]
]


@pytest.mark.parametrize("options", PARALLEL_COMBOS, ids=[_id(o) for o in PARALLEL_COMBOS])
def test_parallel_luong_teacher_forcing_equals_the_step_loop(options):
    """Luong without input feeding attends for all positions at once; same logits as the loop."""
    model = make_model(**options)
    assert model.parallel_attention
    encoder = model.encode(SRC)
    looped = model.output_projection(
        model.decoder.step_loop(
            model.tgt_embedding(TGT_IN), TGT_IN != 0, encoder, training=False, weights=False
        )
    ).numpy()
    real = TGT_IN != 0
    np.testing.assert_allclose(model((SRC, TGT_IN)).numpy()[real], looped[real], atol=ATOL)
    padded = np.pad(SRC, [(0, 0), (0, 3)])
    np.testing.assert_allclose(model((padded, TGT_IN)).numpy()[real], looped[real], atol=ATOL)
    assert not make_model(attention="luong", input_feeding=True).parallel_attention
    assert not make_model(attention="bahdanau", input_feeding=False).parallel_attention


@pytest.mark.parametrize("score", ["general", "dot"])
def test_luong_sequence_query_equals_one_query_at_a_time(score):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(3, 5, 12)).astype("float32")
    queries = rng.normal(size=(3, 4, 12)).astype("float32")
    mask = SRC != 0
    layer = LuongAttention(score)
    layer.build((None, 12), (None, None, 12))
    context, weights = layer(queries, values, mask=mask)
    assert context.shape == (3, 4, 12) and weights.shape == (3, 4, 5)
    for t in range(4):
        c_t, w_t = layer(queries[:, t], values, mask=mask)
        np.testing.assert_allclose(context[:, t], c_t, atol=ATOL)
        np.testing.assert_allclose(weights[:, t], w_t, atol=ATOL)
    assert (weights.numpy()[np.broadcast_to(~mask[:, None, :], (3, 4, 5))] == 0).all()


def test_input_feeding_adds_the_attentional_vector_as_last_state():
    fed, plain = make_model(input_feeding=True), make_model(input_feeding=False)
    enc_fed, enc_plain = fed.encode(SRC), plain.encode(SRC)
    assert len(enc_fed.states) == len(enc_plain.states) + 1 == 3  # LSTM (h, c) + a
    assert (enc_fed.states[-1].numpy() == 0).all() and enc_fed.states[-1].shape == (3, 12)
    assert enc_fed.keys.shape == (3, 5, 12)


def _canonical_paths(model) -> list[str]:
    return [re.sub(r"seed_generator(_\d+)?/", "seed_generator/", v.path) for v in model.variables]


def test_attention_none_is_the_model_without_attention():
    """`attention: none` (explicit, or keys absent as in configs written before attention)
    builds exactly the same weights and gives exactly the same outputs."""
    explicit = model_config(attention="none", dec_layers=2)
    new_keys = ("attention", "attention_score", "input_feeding")
    legacy = {
        **explicit,
        "decoder": {k: v for k, v in explicit["decoder"].items() if k not in new_keys},
    }
    outputs = []
    for config in (explicit, legacy):
        keras.utils.set_random_seed(3)
        model = build_model(config, VOCAB, VOCAB, seed=3)
        encoder = model.encode(SRC)
        step_logits, states = model.decode_step(TGT_IN[:, 0], encoder.states, encoder)
        outputs.append((model, model((SRC, TGT_IN)).numpy(), step_logits.numpy(), encoder))
    (a, logits_a, step_a, enc_a), (b, logits_b, step_b, _) = outputs
    assert a.attention is None and enc_a.keys == () and len(enc_a.states) == 4
    assert _canonical_paths(a) == _canonical_paths(b)
    assert not any("attention" in p for p in _canonical_paths(a))
    for va, vb in zip(a.variables, b.variables, strict=True):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    np.testing.assert_array_equal(logits_a, logits_b)
    np.testing.assert_array_equal(step_a, step_b)
    with pytest.raises(ValueError, match="attention is none"):
        a.attention_weights(SRC, TGT_IN)


@pytest.mark.parametrize("kind", ["bahdanau", "luong"])
def test_search_greedy_equals_beam_one_and_beam_scores_match_teacher_forcing(kind):
    model = make_model(attention=kind, dec_layers=2)
    searcher = Searcher(model, bos_id=BOS_ID, eos_id=EOS_ID)
    max_len = np.array([6, 4, 3], np.int32)
    greedy = searcher.search(SRC, max_len, beam_size=1)
    beam1 = searcher.beam(SRC, max_len, beam_size=1)
    for g, b in zip(greedy, beam1, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-4)
    beam4 = searcher.search(SRC, max_len, beam_size=4, n_best=4)
    for per_input in beam4:
        assert len(per_input) == 4
        assert len({tuple(h.tokens) for h in per_input}) == 4
    # The tiled keys and the gathered states (attentional vector included) are right: the beam
    # scores are the teacher-forced log-probabilities of the hypotheses.
    rows = [i for i, per_input in enumerate(beam4) for _ in per_input]
    hyps = [h for per_input in beam4 for h in per_input]
    tgt_in = pad_batch([[BOS_ID, *h.tokens] for h in hyps])
    logp = tf.nn.log_softmax(model((SRC[rows], tgt_in)), axis=-1).numpy()
    for j, h in enumerate(hyps):
        expected = sum(logp[j, i, t] for i, t in enumerate([*h.tokens, EOS_ID]))
        assert h.score == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("kind,score", MECHANISMS, ids=["bahdanau", "luong-general", "luong-dot"])
def test_save_and_load_keras_file(kind, score, tmp_path):
    model = make_model(attention=kind, score=score, dec_cell="gru")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert type(loaded.attention) is type(model.attention)
    np.testing.assert_array_equal(loaded((SRC, TGT_IN)).numpy(), model((SRC, TGT_IN)).numpy())
    np.testing.assert_array_equal(
        loaded.attention_weights(SRC, TGT_IN).numpy(), model.attention_weights(SRC, TGT_IN).numpy()
    )


@pytest.mark.parametrize(
    "options",
    [dict(attention="bahdanau", dec_layers=2), dict(attention="luong", input_feeding=False)],
    ids=["bahdanau", "luong-no-feeding"],
)
def test_every_trainable_weight_gets_a_gradient(options):
    model = make_model(**options)
    loss_fn = MaskedCrossEntropy()
    with tf.GradientTape() as tape:
        loss = loss_fn(TGT_OUT, model((SRC, TGT_IN), training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    zero = [
        v.path
        for v, g in zip(model.trainable_variables, grads, strict=True)
        if g is None or not np.any(tf.convert_to_tensor(g).numpy())
    ]
    assert not zero, f"no gradient for {zero}"


# --------------------------------------------------------------------------- alignments

SENTENCES_DE = ["das auto ist rot", "der hund schläft", "ich sehe das haus"]
SENTENCES_EN = ["the car is red", "the dog sleeps", "i see the house"]


def _translator(**options) -> Translator:
    src_tok = WordTokenizer.train(SENTENCES_DE, VOCAB)
    tgt_tok = WordTokenizer.train(SENTENCES_EN, VOCAB)
    keras.utils.set_random_seed(5)
    model = build_model(model_config(**options), src_tok.vocab_size, tgt_tok.vocab_size, seed=5)
    return Translator(model, src_tok, tgt_tok)


def test_translate_returns_alignments_and_plots_them(tmp_path):
    translator = _translator(attention="luong")
    alignment = translator.align("das auto ist rot")
    assert alignment.source_tokens == ["das", "auto", "ist", "rot"]
    assert alignment.target_tokens[-1] == "</s>"
    assert alignment.attention.shape == (len(alignment.target_tokens), 4)
    np.testing.assert_allclose(alignment.attention.sum(1), 1.0, rtol=1e-5)
    assert alignment.translation == translator.translate("das auto ist rot")

    several = translator.align(["der hund schläft", "", "ich sehe das haus"], beam_size=3)
    assert [a.translation for a in several] == translator.translate(
        ["der hund schläft", "", "ich sehe das haus"], beam_size=3
    )
    assert several[1].attention.shape == (1, 0)
    for a in several[::2]:
        assert a.attention.shape == (len(a.target_tokens), len(a.source_tokens))
        np.testing.assert_allclose(a.attention.sum(1), 1.0, rtol=1e-5)

    path = plot_attention(alignment, tmp_path / "plots" / "attention.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in path.parent.iterdir()] == ["attention.png"]  # no temporary left


def test_align_without_attention_is_a_clear_error():
    translator = _translator(attention="none")
    with pytest.raises(ValueError, match="attention is none"):
        translator.align("das auto ist rot")


def test_old_translate_keywords_still_work_with_a_deprecation_warning():
    translator = _translator(attention="luong")
    with pytest.warns(DeprecationWarning, match="align"):
        old = translator.translate("das auto ist rot", return_attention=True)
    np.testing.assert_array_equal(old.attention, translator.align("das auto ist rot").attention)
    with pytest.warns(DeprecationWarning, match="translate_nbest"):
        old = translator.translate(SENTENCES_DE, beam_size=3, n_best=2)
    assert old == translator.translate_nbest(SENTENCES_DE, beam_size=3, n_best=2)
    with pytest.warns(DeprecationWarning):
        old = translator.translate("das auto ist rot", return_scores=True)
    assert old == translator.translate_nbest("das auto ist rot", n_best=1)
    with pytest.raises(ValueError, match="attention is none"), pytest.warns(DeprecationWarning):
        _translator(attention="none").translate("das auto ist rot", return_attention=True)


# --------------------------------------------------------------------------- config


def test_config_defaults_and_errors():
    dec = config_from_dict({}).model.decoder
    assert (dec.attention, dec.attention_score, dec.input_feeding) == ("none", "general", True)
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention.*none, bahdanau, luong"):
        config_from_dict({"model": {"decoder": {"attention": "additive"}}})
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention_score.*general, dot"):
        config_from_dict({"model": {"decoder": {"attention": "luong", "attention_score": "x"}}})
    mismatched = {
        "encoder": {"units": 256, "bidirectional": True},
        "decoder": {"units": 256, "attention": "luong", "attention_score": "dot"},
    }
    with pytest.raises(ConfigError, match=r"model\.decoder\.attention_score.*\(512\).*\(256\)"):
        config_from_dict({"model": mismatched})
    mismatched["decoder"]["units"] = 512
    assert config_from_dict({"model": mismatched}).model.decoder.attention_score == "dot"
