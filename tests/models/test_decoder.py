"""Tests for translator.models.decoder: the attention decoder (and `attention: none`).

Tiny untrained models: the properties checked (padding invariance, teacher forcing == stepping,
search, save/load, gradients) hold for any weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import re  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from translator.data.batching import pad_batch  # noqa: E402
from translator.data.tokenizers import BOS_ID, EOS_ID  # noqa: E402
from translator.decoding.search import Searcher  # noqa: E402
from translator.models import MaskedCrossEntropy, Seq2Seq, build_model  # noqa: E402

from .attention_helpers import (  # noqa: E402
    ATOL,
    MECHANISMS,
    SRC,
    TGT_IN,
    TGT_OUT,
    VOCAB,
    make_model,
    model_config,
)


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
