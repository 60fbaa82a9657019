"""translator/flops.py: useful FLOPs from the shapes, against hand counts and the weights."""

import numpy as np
import pytest

from translator.config import DecoderConfig, EncoderConfig, ModelConfig
from translator.flops import (
    FlopCounts,
    decoding_flops,
    flop_counts,
    flops_per_target_token,
    forward_flops,
    training_flops,
)

# Small configs of every cell, bidirectional merge, attention kind and option; the hand counts
# below use E = encoder output size, U = decoder units, D = embedding size, V = 10 or 20.
LSTM_PLAIN = ModelConfig(
    embedding_dim=4,
    encoder=EncoderConfig(cell="lstm", units=8),
    decoder=DecoderConfig(cell="lstm", units=8),
)
GRU_LUONG_GENERAL = ModelConfig(  # 2-layer bidirectional concat: E = 12; input feeding
    embedding_dim=4,
    encoder=EncoderConfig(cell="gru", num_layers=2, units=6, bidirectional=True),
    decoder=DecoderConfig(cell="gru", units=10, attention="luong", input_feeding=True),
)
RNN_BAHDANAU = ModelConfig(  # bidirectional sum: E = 8; no input feeding; zero bridge
    embedding_dim=4,
    encoder=EncoderConfig(cell="rnn", units=8, bidirectional=True, merge="sum"),
    decoder=DecoderConfig(cell="lstm", units=8, attention="bahdanau", input_feeding=False),
    init_hidden="zero",
)
LSTM_LUONG_DOT_TIED = ModelConfig(  # input feeding, `last` bridge, tied softmax (D == U)
    embedding_dim=8,
    encoder=EncoderConfig(cell="lstm", units=8),
    decoder=DecoderConfig(cell="lstm", units=8, attention="luong", attention_score="dot"),
    init_hidden="last",
    tied_softmax=True,
)

HAND = {
    # encoder 2*4*8*(4+8); bridge h and c 2 * 2*8*8; decoder 2*4*8*(4+8); output 2*8*10
    "lstm_plain": (
        LSTM_PLAIN,
        10,
        FlopCounts(
            encoder_per_src_token=768,
            bridge_per_sentence=256,
            decoder_per_tgt_token=768,
            output_per_tgt_token=160,
        ),
    ),
    # encoder 2 * 2*3*6*(4+6) + 2 * 2*3*6*(12+6); keys 2*12*10; bridge 2*12*10;
    # decoder 2*3*10*(4+10+10); vector 2*(12+10)*10; output 2*10*20; pair 2*10 + 2*12
    "gru_luong_general": (
        GRU_LUONG_GENERAL,
        20,
        FlopCounts(
            encoder_per_src_token=720 + 1296,
            keys_per_src_token=240,
            bridge_per_sentence=240,
            decoder_per_tgt_token=1440,
            attention_vector_per_tgt_token=440,
            output_per_tgt_token=400,
            attention_per_pair=44,
        ),
    ),
    # encoder 2 * 2*1*8*(4+8); keys and query 2*8*8; decoder 2*4*8*(4+8+8);
    # vector 2*(8+8)*8; output 2*8*10; pair 2*8 + 2*8
    "rnn_bahdanau": (
        RNN_BAHDANAU,
        10,
        FlopCounts(
            encoder_per_src_token=384,
            keys_per_src_token=128,
            decoder_per_tgt_token=1280,
            query_per_tgt_token=128,
            attention_vector_per_tgt_token=256,
            output_per_tgt_token=160,
            attention_per_pair=32,
        ),
    ),
    # encoder 2*4*8*(8+8); no keys (dot), no bridge (last); decoder 2*4*8*(8+8+8);
    # vector 2*(8+8)*8; output 2*8*10 (tied: the same product); pair 2*8 + 2*8
    "lstm_luong_dot_tied": (
        LSTM_LUONG_DOT_TIED,
        10,
        FlopCounts(
            encoder_per_src_token=1024,
            decoder_per_tgt_token=1536,
            attention_vector_per_tgt_token=256,
            output_per_tgt_token=160,
            attention_per_pair=32,
        ),
    ),
}


@pytest.mark.parametrize("name", list(HAND))
def test_flop_counts_match_hand_counts(name):
    config, vocab, expected = HAND[name]
    assert flop_counts(config, vocab) == expected


def test_forward_training_and_decoding_flops_by_hand():
    counts = flop_counts(GRU_LUONG_GENERAL, 20)
    src, tgt = np.array([3, 2]), np.array([4, 1])
    source = (2016 + 240) * 5 + 240 * 2
    steps = (1440 + 440 + 400) * 5
    pairs = 44 * (3 * 4 + 2 * 1)
    assert forward_flops(counts, src, tgt) == source + steps + pairs
    assert training_flops(counts, src, tgt) == 3 * (source + steps + pairs)
    # Decoding: encoder once per sentence; (out + 1) steps of `beam` hypotheses; an empty source
    # is not decoded.
    src, out = [3, 0, 2], [4, 7, 1]
    per_hyp = (1440 + 440 + 400) * (5 + 2) + 44 * (3 * 5 + 2 * 2)
    assert decoding_flops(counts, src, out, beam_size=2) == source + 2 * per_hyp
    assert decoding_flops(counts, src, out) == source + per_hyp


def test_flops_per_target_token_adds_up():
    counts = flop_counts(RNN_BAHDANAU, 10)
    src, tgt = np.array([5, 3, 7]), np.array([6, 2, 8])
    parts = flops_per_target_token(counts, src, tgt)
    assert parts["forward"] == round(forward_flops(counts, src, tgt) / 16)
    assert parts["training"] == round(3 * forward_flops(counts, src, tgt) / 16)
    total = sum(parts[k] for k in ("encoder", "decoder", "attention", "output"))
    assert abs(total - parts["forward"]) <= 2
    assert parts["output"] == 160


def _kernels(layers) -> int:
    """Weights of the kernels (not biases) of `layers`."""
    return sum(
        int(np.prod(w.shape))
        for layer in layers
        for w in layer.weights
        if w.name in ("kernel", "recurrent_kernel", "key_kernel", "query_kernel")
    )


@pytest.mark.parametrize("name", list(HAND))
def test_flops_per_token_are_twice_the_kernel_weights(name):
    """Each product multiplies every kernel weight once per token (or sentence): 2 FLOPs each."""
    from translator.models import build_model

    config, vocab, _ = HAND[name]
    counts = flop_counts(config, vocab)
    model = build_model(config, vocab, vocab)
    assert counts.encoder_per_src_token == 2 * _kernels(model.encoder_layers)
    assert counts.decoder_per_tgt_token == 2 * _kernels(model.decoder_layers)
    assert counts.bridge_per_sentence == 2 * _kernels([model.bridge])
    if model.attention is not None:
        att = model.attention
        keys = getattr(att, "key_kernel", getattr(att, "kernel", None))
        assert counts.keys_per_src_token == (
            2 * int(np.prod(keys.shape)) if keys is not None else 0
        )
        query = getattr(att, "query_kernel", None)
        assert counts.query_per_tgt_token == (
            2 * int(np.prod(query.shape)) if query is not None else 0
        )
        assert counts.attention_vector_per_tgt_token == 2 * _kernels([model.attention_vector])
    output = (
        model.tgt_embedding.embeddings if config.tied_softmax else model.output_projection.kernel
    )
    assert counts.output_per_tgt_token == 2 * int(np.prod(output.shape))
