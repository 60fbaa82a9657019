"""Every shipped architecture config trains a few steps on tiny data and decodes (greedy and beam)."""

import shutil
from pathlib import Path

import pytest
from translator.pipelines.stages import Context, run_stage

from translator.config import load_config
from translator.translate import Translator

from ..conftest import ROOT
from .helpers import run_main

CONFIGS = sorted((ROOT / "configs" / "ding-de-en").glob("*.yaml"))


def _small(cfg_path: Path) -> list[str]:
    cfg = load_config(cfg_path)
    enc_units = 16 if cfg.model.encoder.bidirectional else 32
    # A tied softmax reads decoder states through the embedding matrix: the sizes must match.
    emb = 32 if cfg.model.tied_softmax else 16
    return [
        "data.max_train_pairs=400",
        "data.max_valid_pairs=20",
        "data.max_test_pairs=20",
        "data.max_words=20",
        "data.use_phrases=false",
        "tokenizer.src_vocab_size=300",
        "tokenizer.tgt_vocab_size=300",
        f"model.embedding_dim={emb}",
        f"model.encoder.units={enc_units}",
        "model.decoder.units=32",
        "train.epochs=1",
        "train.steps_per_epoch=3",
        "train.valid_bleu_pairs=8",
        "train.max_minutes=null",
    ]


@pytest.mark.parametrize("cfg_path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_and_decodes(cfg_path, tiny_run, tmp_path):
    cfg = load_config(cfg_path, overrides=_small(cfg_path))
    run = tmp_path / cfg.name
    shutil.copytree(tiny_run / "data", run / "data")
    ctx = Context(cfg, run, verbose=0)
    for stage in ("prepare", "tokenize", "train"):
        run_stage(ctx, stage)
    t = Translator.load(run)
    sentences = ["Das Auto steht in der Garage.", "Er ist Engländer.", ""]
    greedy = t.translate(sentences, beam_size=1)
    beam = t.translate_nbest(sentences, beam_size=3, n_best=2)
    assert len(greedy) == 3 and greedy[2] == ""
    assert len(beam) == 3 and all(len(b) == 2 for b in beam[:2])
    assert t.translate(sentences[:2], beam_size=1, batch_size=1) == greedy[:2]
    if cfg.model.decoder.attention != "none":
        png = tmp_path / "alignment.png"
        r = run_main("translate", run, sentences[0], "--beam-size", "2", "--plot-attention", png)
        assert r.returncode == 0, r.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert r.stdout.strip() == t.translate(sentences[0], beam_size=2)
