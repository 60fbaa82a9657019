"""Input tables (`Seq2Seq.input_tables`): decoding that gathers the first recurrent layers' input
products from tables of every token's embedding times the input kernel gives the same results, to
the bit, as multiplying at every step; model shapes that cannot take them decode as before."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.config import DecoderConfig, EncoderConfig, ModelConfig
from translator.decoding.contract import Seq2SeqStepModel, as_step_model
from translator.decoding.sampling import Sampler
from translator.decoding.search import Searcher
from translator.layers.bidirectional import BidirectionalRNN
from translator.layers.lstm import LSTM, lstm_cell_projected
from translator.models import build_model
from translator.models.seq2seq import InputTables

SRC_VOCAB, TGT_VOCAB = 50, 60


def _model(
    enc="lstm",
    dec="lstm",
    bidirectional=True,
    attention="luong",
    input_feeding=False,
    layers=(1, 1),
    recurrent_dropout=0.0,
):
    cfg = ModelConfig(
        embedding_dim=8,
        encoder=EncoderConfig(
            cell=enc, units=12, num_layers=layers[0], bidirectional=bidirectional
        ),
        decoder=DecoderConfig(
            cell=dec,
            units=12,
            num_layers=layers[1],
            attention=attention,
            input_feeding=input_feeding,
            recurrent_dropout=recurrent_dropout,
        ),
    )
    return build_model(dataclasses.asdict(cfg), SRC_VOCAB, TGT_VOCAB, seed=3)


def _sources(seed=0, n=23, longest=9):
    """Right-padded source ids [n, longest] of random lengths 1..longest (some rows full)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, longest + 1, size=n)
    lengths[0] = longest
    src = np.zeros((n, longest), np.int32)
    for i, length in enumerate(lengths):
        src[i, :length] = rng.integers(4, SRC_VOCAB, size=length)
    return src


def _decode_all(step_model, src):
    """Greedy (fixed batch and refilled rows), beam 3 (2-best) and sampling of `src`."""
    searcher = Searcher(step_model, bos_id=2, eos_id=3)
    max_len = np.full([len(src)], 7, np.int32)
    results = {
        "greedy": searcher.search(src, max_len, beam_size=1),
        "refilled": searcher.search(src, max_len, beam_size=1, slots=8),
        "beam": searcher.search(src, max_len, beam_size=3, n_best=2, word_reward=0.5),
        "sampled": Sampler(step_model, bos_id=2, eos_id=3).sample(src, max_len, topk=5, seed=7),
    }
    return {
        kind: [
            [
                (h.tokens, h.score, h.normalized_score)
                for h in (row if isinstance(row, list) else [row])
            ]
            for row in hyps
        ]
        for kind, hyps in results.items()
    }


# (model arguments, which sides get a table)
SHAPES = {
    "bilstm-luong": ({}, (True, True)),
    "lstm-no-attention-2-layers": (
        {"bidirectional": False, "attention": "none", "layers": (2, 2)},
        (True, True),
    ),
    "luong-input-feeding": ({"input_feeding": True}, (True, False)),
    "bahdanau": ({"attention": "bahdanau"}, (True, False)),
    "gru-encoder": ({"enc": "gru"}, (False, True)),
    "gru-decoder": ({"dec": "gru"}, (True, False)),
    "elman-encoder": ({"enc": "rnn", "bidirectional": False}, (False, True)),
    "decoder-recurrent-dropout": ({"recurrent_dropout": 0.2}, (True, False)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_decoding_from_tables_gives_the_same_bits(name):
    kwargs, (has_encoder, has_decoder) = SHAPES[name]
    model = _model(**kwargs)
    tables = model.input_tables()
    assert (tables.encoder is not None, tables.decoder is not None) == (
        has_encoder,
        has_decoder,
    )
    src = _sources()
    fixed = as_step_model(model, fixed_weights=True)
    assert fixed.input_tables() is fixed.input_tables()  # made once
    assert _decode_all(fixed, src) == _decode_all(as_step_model(model), src)


def test_no_tables_unless_the_weights_are_fixed_or_for_mixed_precision_or_past_the_budget():
    model = _model()
    assert as_step_model(model).input_tables() is None  # a model being trained
    assert model.input_tables(max_bytes=0) == InputTables(None, None)
    # Room for the encoder's two tables only: they come first.
    two = 2 * SRC_VOCAB * 4 * 12 * 4
    tables = model.input_tables(max_bytes=two)
    assert tables.encoder is not None and tables.decoder is None
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = _model()
    finally:
        keras.config.set_dtype_policy("float32")
    assert mixed.input_tables() == InputTables(None, None)


def test_a_stale_table_is_never_used_by_a_translator_of_a_model_in_training(tiny_run):
    """Training's validation decodes the live model through a `Translator` built on it: no
    tables there (its weights change every step); `Translator.load` makes them."""
    from translator.translate import Translator

    loaded = Translator.load(tiny_run)
    assert loaded.searcher.model.input_tables() is not None
    live = Translator(loaded.model, loaded.src_tokenizer, loaded.tgt_tokenizer, loaded.decode)
    assert live.searcher.model.input_tables() is None
    sentences = ["Das Haus ist klein.", "Wo ist der Bahnhof?", ""]
    assert loaded.translate_hypotheses(sentences) == live.translate_hypotheses(sentences)
    weights = loaded.model.get_weights()
    live.model.set_weights([w * 1.5 for w in weights])
    changed = live.translate_hypotheses(sentences, beam_size=1)
    assert changed == Translator(
        live.model, live.src_tokenizer, live.tgt_tokenizer, fixed_weights=True
    ).translate_hypotheses(sentences, beam_size=1)


def test_layers_from_projected_inputs_equal_the_layers_to_the_bit():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6, 7)).astype("float32")
    mask = np.array([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5, [1] * 5 + [0]], bool)
    lstm = LSTM(9, return_sequences=True, return_state=True)
    bi = BidirectionalRNN(LSTM(9, return_sequences=True, return_state=True))
    for layer in (lstm, bi):
        layer.build((None, None, 7))
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
        assert layer.runs_projected()
    expected = lstm(x, mask=mask)
    got = lstm.run_projected(tf.matmul(x, lstm.cell.kernel), mask)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(np.asarray(e) * 1, np.asarray(g) * 1)
    lengths = mask.sum(1)
    reversed_x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
    expected = bi(x, mask=mask)
    got = bi.run_projected(
        tf.matmul(x, bi.forward_layer.cell.kernel),
        tf.matmul(reversed_x, bi.backward_layer.cell.kernel),
        mask,
    )
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(np.asarray(e), np.asarray(g))
    cell = lstm.cell
    states = [rng.normal(size=(4, 9)).astype("float32") for _ in range(2)]
    h, (h2, c) = cell(x[:, 0], states)[0], cell(x[:, 0], states)[1]
    ph, (ph2, pc) = lstm_cell_projected(cell, tf.matmul(x[:, 0], cell.kernel), states)
    for e, g in ((h, ph), (h2, ph2), (c, pc)):
        np.testing.assert_array_equal(np.asarray(e), np.asarray(g))


def test_the_step_model_takes_tables_made_beforehand():
    """The export's way: tables as variables, given to the step model."""
    model = _model()
    tables = model.input_tables()
    variables = InputTables([tf.Variable(t) for t in tables.encoder], tf.Variable(tables.decoder))
    given = Seq2SeqStepModel(model, tables=variables)
    src = _sources(seed=2, n=9)
    assert given.input_tables() is variables
    assert _decode_all(given, src) == _decode_all(as_step_model(model), src)
