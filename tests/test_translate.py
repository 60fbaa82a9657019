"""Tests for translator.translate: the `Translator` API, alignments (`align`), the deprecated
`translate` keywords."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from translator.data.tokenizers import WordTokenizer  # noqa: E402
from translator.models import build_model  # noqa: E402
from translator.plots import plot_attention  # noqa: E402
from translator.rundir import ModelNotFoundError  # noqa: E402
from translator.translate import Translator  # noqa: E402

from .models.attention_helpers import VOCAB, model_config  # noqa: E402

# --------------------------------------------------------------------------- the Translator API


def test_translator_api(tiny_run):
    t = Translator.load(tiny_run)
    one = t.translate("Das Auto steht in der Garage.")
    assert isinstance(one, str)
    many = t.translate(["Das Auto steht in der Garage.", "Er ist Engländer.", ""])
    assert isinstance(many, list) and len(many) == 3
    assert many[0] == one
    assert many[2] == ""
    very_long = " ".join(["Das Auto steht in der Garage und der Hund schläft."] * 40)
    with pytest.warns(UserWarning, match="much longer than any seen in training"):
        assert isinstance(t.translate(very_long), str)


def test_greedy_windows_give_the_outputs_of_fixed_batches(tiny_attention_run, monkeypatch):
    """Greedy search refills the rows of a window of batches (`WINDOW_BATCHES`); with windows of
    one batch it is the fixed-batch search: the same tokens, and the same scores up to float
    rounding (the attention sums over the window's padding)."""
    from translator import translate as translate_module

    lines = (tiny_attention_run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    sources = [line.split("\t")[0] for line in lines[:40]] + [""]
    t = Translator.load(tiny_attention_run)
    windows = t.translate_hypotheses(sources, beam_size=1, batch_size=4)
    monkeypatch.setattr(translate_module, "WINDOW_BATCHES", 1)
    batches = t.translate_hypotheses(sources, beam_size=1, batch_size=4)
    assert [h[0].tokens for h in windows] == [h[0].tokens for h in batches]
    assert [h[0].score for h in windows] == pytest.approx([h[0].score for h in batches], rel=1e-6)
    assert t.searcher._functions[("refill", 4, False)].experimental_get_tracing_count() == 1


def _hypotheses_by_workers(make, sources, options, workers=(1, 2, 3)):
    """Per number of workers, the hypotheses of a fresh translator (`make()`) and the names of
    the threads its searches ran in."""
    out = {}
    for n in workers:
        t = make()
        threads = set()
        for part in (t.searcher, t.sampler):
            for name in ("search", "sample"):
                if hasattr(part, name):
                    original = getattr(part, name)

                    def spy(*args, _original=original, _threads=threads, **kwargs):
                        _threads.add(threading.current_thread().name)
                        return _original(*args, **kwargs)

                    setattr(part, name, spy)
        hyps = t.translate_hypotheses(sources, workers=n, **options)
        out[n] = ([[(h.tokens, h.score, h.normalized_score) for h in per] for per in hyps], threads)
    return out


@pytest.mark.parametrize(
    "options",
    [
        dict(beam_size=1, batch_size=2),
        dict(beam_size=1, batch_size=2, xla=True),
        dict(beam_size=3, n_best=2, length_penalty=1.0, word_reward=0.5, batch_size=4),
        dict(sampling_topk=5, seed=3, batch_size=4),
    ],
    ids=["greedy", "greedy-xla", "beam", "sampling"],
)
def test_batches_decoded_in_threads_give_the_same_outputs(tiny_attention_run, options):
    """`decode.workers` decodes several batches (greedy: windows of batches) at once, each in a
    thread; each setting from a fresh translator, so the compiled searches are traced in those
    threads: exactly the same tokens and scores as one batch at a time."""
    lines = (tiny_attention_run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    sources = [line.split("\t")[0] for line in lines[:40]] + ["", lines[0].split("\t")[0]]
    out = _hypotheses_by_workers(lambda: Translator.load(tiny_attention_run), sources, options)
    assert out[1][1] == {threading.current_thread().name}
    for n in (2, 3):
        assert out[n][0] == out[1][0]
        assert len(out[n][1]) > 1 and all(t.startswith("translator-decode") for t in out[n][1])


@pytest.mark.filterwarnings("ignore:.*translated to an empty string:UserWarning")  # untrained
def test_threads_decode_a_mixed_precision_model_as_the_main_thread_does():
    """Training's validation decodes its model under the training dtype policy, which Keras keeps
    per thread; the decoding threads give the same outputs as the main thread."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        sources = [" ".join(SENTENCES_DE[i % 3] for i in range(k % 7 + 1)) for k in range(40)]
        options = dict(beam_size=1, batch_size=2, min_output_length=2)
        out = _hypotheses_by_workers(lambda: _translator(attention="luong"), sources, options)
        beam = dict(beam_size=2, batch_size=2, min_output_length=2)
        out_beam = _hypotheses_by_workers(lambda: _translator(attention="luong"), sources, beam)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    for o in (out, out_beam):
        assert o[2][0] == o[1][0] and o[3][0] == o[1][0]
        assert len(o[2][1]) > 1


def test_map_in_threads_keeps_the_order_and_raises_the_first_error():
    from translator.translate import map_in_threads

    items = list(range(12))
    assert map_in_threads(lambda x: x * x, items, 3) == [x * x for x in items]
    assert map_in_threads(lambda x: x + 1, [], 2) == []

    def fails_on_5(x):
        if x == 5:
            raise ValueError("item 5")
        return x

    with pytest.raises(ValueError, match="item 5"):
        map_in_threads(fails_on_5, items, 2)


def test_translate_rejects_what_is_not_text_and_bad_options(tiny_run):
    t = Translator.load(tiny_run)
    for bad in (None, 123, b"Das Haus.", ["Das Haus.", None]):
        with pytest.raises(TypeError, match="string"):
            t.translate(bad)
    # A lone surrogate (from a JSON "\\ud800" escape, or bytes decoded with surrogateescape) is
    # no Unicode text: named, in every entry point, instead of the tokenizer's TypeError.
    lone = r"{} 1: not valid Unicode: a lone surrogate \(\\udcff\) at character 3"
    for call, item in (
        (lambda: t.translate(["Gut.", "Das\udcff Haus."]), "sentence"),
        (lambda: t.translate_nbest(["Gut.", "Das\udcff Haus."]), "sentence"),
        (lambda: t.score(["Gut.", "Das\udcff Haus."], ["Good.", "The house."]), "source"),
        (lambda: t.score(["Gut.", "Das Haus."], ["Good.", "The\udcff house."]), "target"),
    ):
        with pytest.raises(ValueError, match=lone.format(item)):
            call()
    assert t.translate("Das Haus \U0001f600.")  # a pair that is one character is fine
    for options, key in (
        ({"length_penalty": float("nan")}, "decode.length_penalty"),
        ({"beam_size": 0}, "decode.beam_size"),
        ({"batch_size": 0}, "decode.batch_size"),
    ):
        with pytest.raises(ValueError, match=key):
            t.translate("Das Haus.", **options)
    with pytest.raises(ValueError, match="n_best"):
        t.translate_nbest("Das Haus.", beam_size=2, n_best=3)


def test_load_without_a_model_says_which_stage(tmp_path):
    with pytest.raises(ModelNotFoundError, match="train"):
        Translator.load(tmp_path)


def test_load_and_translate_name_the_argument_of_the_wrong_type(tmp_path):
    for run_dir in (None, 3, b"runs/tiny", {"runs/tiny": 1}):
        with pytest.raises(TypeError, match="run_dir: expected a run directory"):
            Translator.load(run_dir)
    with pytest.raises(TypeError, match="model_file: expected a path"):
        Translator.load(tmp_path, model_file=3)
    with pytest.raises(TypeError, match="one flat list"):
        Translator.load([[tmp_path], tmp_path])
    translator = _translator()
    for sentences, got in (("das auto", "a string"), ({"das auto": 1}, "dict"), (5, "int")):
        with pytest.raises(
            TypeError, match=f"expected a list of strings \\(sentences\\), got {got}"
        ):
            translator.translate_hypotheses(sentences)


# --------------------------------------------------------------------------- alignments

SENTENCES_DE = ["das auto ist rot", "der hund schläft", "ich sehe das haus"]
SENTENCES_EN = ["the car is red", "the dog sleeps", "i see the house"]


def _translator(**options) -> Translator:
    src_tok = WordTokenizer.train(SENTENCES_DE, VOCAB)
    tgt_tok = WordTokenizer.train(SENTENCES_EN, VOCAB)
    keras.utils.set_random_seed(5)
    model = build_model(model_config(**options), src_tok.vocab_size, tgt_tok.vocab_size, seed=5)
    return Translator(model, src_tok, tgt_tok)


@pytest.mark.filterwarnings("ignore:.*translated to an empty string:UserWarning")  # untrained
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


@pytest.mark.filterwarnings("ignore:.*translated to an empty string:UserWarning")  # untrained
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


def test_warnings_a_user_wants(tiny_run):
    from translator.decoding.search import Hypothesis

    t = Translator.load(tiny_run)
    assert t.max_train_src_tokens and t.max_train_src_tokens > 5
    # A search that ends every sentence at once (a test double of the searcher).
    t.searcher.search = lambda src, *args, **kwargs: [[Hypothesis([], -1.0)] for _ in src]
    with pytest.warns(UserWarning, match="1 of 1 sentences were translated to an empty string"):
        t.translate(["Das Haus ist alt.", ""])
    t = Translator.load(tiny_run)
    very_long = " ".join(["Das Auto steht in der Garage und der Hund schläft."] * 40)
    with pytest.warns(UserWarning, match="much longer than any seen in training"):
        t.translate(very_long)


def test_a_model_file_that_is_a_directory_says_so(tiny_run):
    with pytest.raises(FileNotFoundError, match="checkpoints is a directory, not a .keras model"):
        Translator.load(tiny_run, model_file="checkpoints")
