"""Tests for translator.models.seq2seq: masking of padding, exact save/load, bridges."""

import dataclasses

import keras
import numpy as np
import pytest

from translator.config import DecoderConfig, EncoderConfig, ModelConfig
from translator.data.tokenizers import BOS_ID
from translator.models import build_model


def _model(enc="lstm", dec="lstm", bidirectional=False, init="dense", layers=(1, 1), seed=3):
    cfg = ModelConfig(
        embedding_dim=8,
        encoder=EncoderConfig(
            cell=enc, units=12, num_layers=layers[0], bidirectional=bidirectional
        ),
        decoder=DecoderConfig(
            cell=dec, units=12 if init != "last" else 12 * (1 + bidirectional), num_layers=layers[1]
        ),
        init_hidden=init,
    )
    return build_model(dataclasses.asdict(cfg), 30, 40, seed=seed)


@pytest.mark.parametrize(
    "enc,dec,bidirectional,init,layers",
    [
        ("lstm", "lstm", False, "dense", (1, 1)),
        ("lstm", "gru", False, "dense", (2, 1)),
        ("gru", "lstm", True, "dense", (1, 2)),
        ("rnn", "gru", False, "last", (2, 2)),
        ("lstm", "lstm", True, "last", (1, 1)),
        ("gru", "gru", False, "zero", (1, 1)),
    ],
)
def test_padding_changes_nothing_and_save_load_is_exact(
    enc, dec, bidirectional, init, layers, tmp_path
):
    model = _model(enc, dec, bidirectional, init, layers)
    src = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], dtype="int32")
    tin = np.array([[BOS_ID, 5, 6], [BOS_ID, 7, 0]], dtype="int32")
    logits = np.asarray(model((src, tin)))
    wider = np.pad(src, ((0, 0), (0, 3)))
    wider_t = np.pad(tin, ((0, 0), (0, 2)))
    logits_wide = np.asarray(model((wider, wider_t)))
    np.testing.assert_allclose(logits_wide[0, :3], logits[0], atol=1e-5)
    np.testing.assert_allclose(logits_wide[1, :2], logits[1, :2], atol=1e-5)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(again((src, tin))), logits)


def test_bridge_modes_start_the_decoder_as_configured():
    src = np.array([[5, 6, 7]], dtype="int32")
    zero = _model(init="zero").encode(src)
    assert all(float(np.abs(np.asarray(s)).max()) == 0.0 for s in zero.states)
    last = _model(enc="lstm", dec="lstm", init="last")
    enc = last.encode(src)
    out = last.encoder_layers[0](last.src_embedding(src))
    np.testing.assert_allclose(np.asarray(enc.states[0]), np.asarray(out[1]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(enc.states[1]), np.asarray(out[2]), atol=1e-6)
