"""Shared helpers of the attention tests: tiny untrained attention models and a padded batch."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dataclasses  # noqa: E402
import functools  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from translator.config import DecoderConfig, EncoderConfig, ModelConfig  # noqa: E402
from translator.data.tokenizers import BOS_ID, EOS_ID  # noqa: E402
from translator.models import Seq2Seq, build_model  # noqa: E402

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
