"""Unit tests of the data pipeline and the encoder–decoder: batching, masking, bridges, save/load."""

import dataclasses

import keras
import numpy as np
import pytest

from translator.config import DecoderConfig, EncoderConfig, ModelConfig
from translator.data.batching import BucketedDataset, length_sorted_batches, pad_batch
from translator.data.tokenizers import BOS_ID, EOS_ID
from translator.models import MaskedCrossEntropy, build_model


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


def test_buckets_cover_every_pair_once_with_teacher_forcing():
    rng = np.random.default_rng(0)
    src = [list(rng.integers(4, 30, rng.integers(1, 30))) for _ in range(300)]
    tgt = [list(rng.integers(4, 40, rng.integers(1, 30))) for _ in range(300)]
    data = BucketedDataset(src, tgt, batch_tokens=200, max_batch_size=32, shuffle=True, seed=1)
    batches = list(data.dataset().as_numpy_iterator())
    assert len(batches) == data.steps_per_pass()
    seen = []
    for (s, ti), to in batches:
        assert s.shape[0] == ti.shape[0] == to.shape[0] <= 32
        assert (ti[:, 0] == BOS_ID).all()
        lengths = (to != 0).sum(1)
        assert (to[np.arange(len(to)), lengths - 1] == EOS_ID).all()
        shifted = ti[:, 1:] != 0  # tgt_in is BOS + target: target token t sits at t + 1
        assert (ti[:, 1:][shifted] == to[:, :-1][shifted]).all()
        for row_s, row_t in zip(s, to, strict=True):
            seen.append((tuple(row_s[row_s != 0]), tuple(row_t[row_t != 0][:-1])))
    assert sorted(seen) == sorted((tuple(a), tuple(b)) for a, b in zip(src, tgt, strict=True))


def test_training_order_is_shuffled_over_the_whole_data():
    # Ordered data (like the bundled phrases appended after the sentences): the first batch of a
    # pass must draw from all of it, not only from the head a bounded shuffle buffer would hold.
    n = 30000
    src = [[4 + i] for i in range(n)]
    tgt = [[5]] * n
    data = BucketedDataset(src, tgt, batch_tokens=400, max_batch_size=64, shuffle=True, seed=1)
    (first, _), _ = next(iter(data.dataset(repeat=True).as_numpy_iterator()))
    index = first[:, 0] - 4
    assert len(index) == 64 and index.max() > 25000 and index.min() < 5000
    bounded = BucketedDataset(src, tgt, 400, 64, shuffle=True, seed=1, shuffle_buffer=100)
    (first, _), _ = next(iter(bounded.dataset().as_numpy_iterator()))
    assert (first[:, 0] - 4).max() < 200


def test_training_speed_is_tokens_over_seconds_of_all_epochs():
    from translator.training import TrainResult, TrainState

    rows = [
        {"epoch": 1, "epoch_seconds": 80.0, "train_tokens_per_s": 3000.0},
        {"epoch": 2, "epoch_seconds": 2.0, "train_tokens_per_s": 400.0},  # cut by the budget
    ]
    state = {"epoch": 2, "best_epoch": 1, "best_bleu": 1.0, "elapsed_seconds": 90.0}
    result = TrainResult.from_state(TrainState("fp", **state, stop_reason="time", history=rows))
    assert result.train_tokens_per_s == pytest.approx((3000 * 80 + 400 * 2) / 82)
    empty = TrainState("fp", **state, stop_reason=None, history=[])
    assert TrainResult.from_state(empty).train_tokens_per_s == 0.0


def test_padding_helpers():
    assert pad_batch([[5, 6], [7]]).tolist() == [[5, 6], [7, 0]]
    batches = length_sorted_batches([3, 9, 1, 5], 2)
    assert batches == [[1, 3], [0, 2]]


def test_masked_loss_ignores_padding():
    loss = MaskedCrossEntropy()
    logits = np.random.default_rng(1).normal(size=(2, 3, 7)).astype("float32")
    labels = np.array([[4, 5, 0], [6, 0, 0]])
    padded_logits = logits.copy()
    padded_logits[0, 2] += 100.0  # changes only a padded position
    assert float(loss(labels, logits)) == pytest.approx(float(loss(labels, padded_logits)))


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
