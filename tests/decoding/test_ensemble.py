"""Ensembles: `Translator.load([run_a, run_b])` decodes with the mean of the models'
log-probabilities inside the same greedy and beam search."""

import json
import shutil

import pytest


def _sources(run, n=12):
    lines = (run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[:n]] + [""]


def test_an_ensemble_of_a_model_with_itself_translates_as_the_model(tiny_attention_run, tmp_path):
    """The mean of two equal log-probabilities is that log-probability, bit for bit."""
    from translator.translate import Translator

    copy = tmp_path / "copy"
    shutil.copytree(tiny_attention_run, copy)
    single = Translator.load(tiny_attention_run)
    ensemble = Translator.load([tiny_attention_run, copy])
    sources = _sources(tiny_attention_run)
    for beam in (1, 4):
        assert ensemble.translate(sources, beam_size=beam) == single.translate(
            sources, beam_size=beam
        )
    got = ensemble.translate_nbest(sources[:3], beam_size=3, n_best=2)
    want = single.translate_nbest(sources[:3], beam_size=3, n_best=2)
    assert [[t for t, _ in row] for row in got] == [[t for t, _ in row] for row in want]
    with pytest.raises(ValueError, match="one run of the ensemble"):
        ensemble.align(sources[0])


def test_an_ensemble_of_different_models_decodes(tiny_run, tiny_attention_run):
    """An LSTM without attention and one with Luong attention, trained on the same tokenizers."""
    from translator.translate import Translator

    ensemble = Translator.load([tiny_run, tiny_attention_run])
    sources = _sources(tiny_run, 6)
    for beam in (1, 3):
        out = ensemble.translate(sources, beam_size=beam)
        assert len(out) == len(sources) and out[-1] == ""
        assert all(isinstance(t, str) for t in out)
        # Batches of 2: greedy search refills its rows across the window (memories of a model
        # without attention and of one with it, padded to the window's width).
        assert ensemble.translate(sources, beam_size=beam, batch_size=2) == out


def test_an_ensemble_needs_the_same_tokenizers(tiny_attention_run, tmp_path):
    from translator.translate import Translator

    other = tmp_path / "other"
    shutil.copytree(tiny_attention_run, other)
    tokenizers = other / "tokenizers"
    shutil.copy(tokenizers / "src.model", tokenizers / "tgt.model")  # another target vocabulary
    # as if `other` had been trained on it (its own record would name that tokenizer)
    record = json.loads((other / "stages" / "train.json").read_text())
    del record["summary"]["tokenizer_digests"]
    (other / "stages" / "train.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="different target vocabularies"):
        Translator.load([tiny_attention_run, other])
    # the CLI passes RunDir objects: the message names their paths (it showed RunDir('...'))
    from translator.rundir import RunDir

    with pytest.raises(ValueError) as error:
        Translator.load([RunDir(tiny_attention_run), RunDir(other)])
    assert f"{tiny_attention_run} and {other} have different" in str(error.value)


def test_cli_translates_with_an_ensemble(tiny_run, tiny_attention_run):
    from tests.pipelines.helpers import cli, run_main
    from translator.translate import Translator

    sentence = _sources(tiny_run, 1)[0]
    # The translation from `main` in this process; the error (before TensorFlow loads) in a
    # subprocess, as a shell sees it.
    r = run_main("translate", f"{tiny_run}+{tiny_attention_run}", sentence, "--beam-size", "2")
    assert r.returncode == 0, r.stderr
    want = Translator.load([tiny_run, tiny_attention_run]).translate(sentence, beam_size=2)
    assert r.stdout.strip() == want.strip()
    r = cli("translate", f"{tiny_run}+{tiny_run}-missing", sentence)
    assert r.returncode == 2 and "Traceback" not in r.stderr
