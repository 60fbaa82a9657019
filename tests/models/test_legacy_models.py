"""`.keras` files saved before the package was reshaped still load and decode exactly as then."""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import translator.models  # noqa: E402, F401  (registers the custom classes)
from translator.decoding.search import Searcher  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
SRC = np.array(EXPECTED["src"], np.int32)
MAX_LEN = np.array(EXPECTED["max_lengths"], np.int32)
BOS, EOS = 2, 3


@pytest.mark.parametrize("name", sorted(EXPECTED["cases"]))
def test_legacy_model_decodes_exactly_as_before(name):
    case = EXPECTED["cases"][name]
    model = keras.saving.load_model(FIXTURES / f"{name}.keras", compile=False)
    searcher = Searcher(model, bos_id=BOS, eos_id=EOS)
    greedy = searcher.search(SRC, MAX_LEN, beam_size=1)
    assert [[h.tokens, h.score] for hs in greedy for h in hs] == case["greedy"]
    beam = searcher.search(SRC, MAX_LEN, beam_size=3, n_best=3, length_penalty=1.0)
    got = [[[h.tokens, h.score, h.normalized_score] for h in hs] for hs in beam]
    assert got == case["beam"]
    tgt_in = np.concatenate([np.full((len(SRC), 1), BOS, np.int32), SRC[:, :4]], 1)
    assert float(np.abs(model((SRC, tgt_in)).numpy()).sum()) == case["logits_sum"]


def test_legacy_checkpoint_resumes_with_its_optimizer_state():
    ckpt = EXPECTED["checkpoint"]
    model = keras.saving.load_model(FIXTURES / "checkpoint.keras", compile=True)
    assert int(model.optimizer.iterations.numpy()) == ckpt["iterations"]
    tgt = np.array(ckpt["tgt"], np.int32)
    x = (SRC, np.concatenate([np.full((len(SRC), 1), BOS, np.int32), tgt[:, :-1]], 1))
    logs = model.train_on_batch(x, tgt, return_dict=True)
    assert float(logs["loss"]) == pytest.approx(ckpt["next_loss"], rel=1e-6)
    total = sum(float(np.abs(w.numpy()).sum()) for w in model.trainable_weights)
    assert total == pytest.approx(ckpt["weights_abs_sum_after"], rel=1e-6)
