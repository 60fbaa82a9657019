"""`translator export`: the SavedModel loads stand-alone and translates exactly as the Python API."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.pipelines.helpers import run_main

# Inputs that must behave exactly as in the Python API: padding (mixed lengths in one batch),
# empty and blank strings, Unicode whitespace and composition, an over-long input, duplicates.
EDGE_CASES = [
    "",
    "   ",
    "Das  ist\u3000ein\tTest.\u00a0",
    "Mu\u0308ller sagt: \u201eJa\u201c.",
    "Hallo",
    "Ein sehr langer Satz, der nicht enden will, " * 12,
    "x" * 400,
    "Hallo",
]


# EDGE_CASES hold inputs far longer than any training sentence, which Translator warns about.
edge_cases_warn = pytest.mark.filterwarnings(
    "ignore:.*much longer than any seen in training:UserWarning"
)


def _test_sources(run, n=None):
    lines = (run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines][:n]


@edge_cases_warn
def test_beam_nbest_export_equals_python_api_standalone(
    tiny_attention_run, tiny_attention_export, tmp_path, monkeypatch
):
    """Beam 4, 3-best, length penalty, word reward, batches of 7 (so several padded batches in
    the graph); the check leaves nothing in the temporary directory."""
    import tempfile

    from translator.export import check_export

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    report = check_export(tiny_attention_export, _test_sources(tiny_attention_run) + EDGE_CASES)
    assert report.passed, report.mismatches
    # (TensorFlow's autograph leaves its generated sources there: not ours to remove.)
    assert not [p for p in temp.iterdir() if not p.name.startswith("__autograph_generated")]


def test_export_layout_and_info(tiny_attention_run, tiny_attention_export):
    from translator.export import read_export_info

    assert (tiny_attention_export / "saved_model.pb").is_file()
    assert sorted(p.name for p in (tiny_attention_export / "assets").iterdir()) == [
        "src.model",
        "tgt.model",
    ]
    assert (tiny_attention_export / "assets" / "src.model").read_bytes() == (
        tiny_attention_run / "tokenizers" / "src.model"
    ).read_bytes()
    info = read_export_info(tiny_attention_export)
    assert info["decode"]["beam_size"] == 4 and info["decode"]["n_best"] == 3
    assert info["decode"]["batch_size"] == 7 and info["decode"]["word_reward"] == 0.5
    assert not list(tiny_attention_export.parent.glob(".*partial"))


def test_saved_model_cli_lists_the_signatures(tiny_attention_export):
    exe = shutil.which("saved_model_cli")
    if exe is None:
        pytest.skip("saved_model_cli is not on PATH (it comes with the tensorflow package)")
    out = subprocess.run(
        [exe, "show", "--dir", str(tiny_attention_export), "--all"], capture_output=True, text=True
    ).stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['translate_nbest']" in out
    assert "inputs['text'] tensor_info:" in out
    assert "outputs['translation'] tensor_info:" in out
    assert "outputs['hypotheses'] tensor_info:" in out


def test_export_backend_answers_as_python_api(tiny_attention_run, tiny_attention_export):
    """What `translator serve EXPORT_DIR` decodes with."""
    from translator.export import load_export_backend
    from translator.translate import Translator

    backend = load_export_backend(tiny_attention_export)
    assert backend.fixed_options
    assert backend.defaults == {"beam_size": 4, "n_best": 3, "length_penalty": 0.6}
    sentences = _test_sources(tiny_attention_run, 5) + ["", "Hallo"]
    got = backend.translate(sentences, beam_size=4, n_best=2, length_penalty=0.6)
    want = Translator.load(tiny_attention_run).translate_nbest(
        sentences, n_best=2, beam_size=4, length_penalty=0.6, batch_size=7, word_reward=0.5
    )
    assert [[t for t, _ in row] for row in got] == [[t for t, _ in row] for row in want]
    assert got[5] == [("", 0.0)]


def test_cli_export_greedy_with_check(tiny_attention_run, tmp_path):
    """As a user types it, with relative paths (`main` in this process; the check loads the export
    in a stand-alone subprocess): a greedy export translates the test split and the edge cases
    exactly as the Python API."""
    shutil.copytree(tiny_attention_run, tmp_path / "runs" / "tiny")
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(_test_sources(tiny_attention_run) + EDGE_CASES) + "\n")
    out = tmp_path / "exports" / "tiny"
    r = run_main(
        "export", "runs/tiny", "exports/tiny", "--beam-size", "1", "--check", sentences.name,
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "greedy search" in r.stdout
    n = len(_test_sources(tiny_attention_run) + EDGE_CASES)
    assert f"{n}/{n} sentences translated identically by the stand-alone export" in r.stdout
    assert json.loads((out / "translator_export.json").read_text())["decode"]["beam_size"] == 1

    # An existing export is not overwritten without --force.
    r = run_main("export", "runs/tiny", "exports/tiny", cwd=tmp_path)
    assert r.returncode == 2
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam-size", "0"], "decode.beam_size"),
        (["--n-best", "3", "--beam-size", "2"], "decode.n_best"),
        (["--length-penalty", "-1"], "decode.length_penalty"),
        (["--workers", "0"], "decode.workers"),
        (["--check", "no-such-file.txt"], "--check"),
    ],
)
def test_cli_export_bad_options(tiny_attention_run, tmp_path, capsys, args, message):
    from translator.pipelines.cli import main

    assert main(["export", str(tiny_attention_run), str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_export_refuses_other_tokenizers_and_untrained_dirs(
    tiny_attention_run, tmp_path, capsys
):
    from translator.pipelines.cli import main

    run = tmp_path / "word-run"
    shutil.copytree(tiny_attention_run, run)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("type: sentencepiece", "type: word"))
    assert main(["export", str(run), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "only sentencepiece tokenizers" in err and "tokenizer.type" in err

    assert main(["export", str(tmp_path / "empty"), str(tmp_path / "out2")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_export_inside_the_run_directory_is_refused(tiny_attention_run):
    from translator.export import ExportError, export_run

    with pytest.raises(ExportError, match="inside the run directory"):
        export_run(tiny_attention_run, tiny_attention_run / "export")


def test_standalone_script_blocks_the_project(tmp_path):
    """The stand-alone check really cannot import this package."""
    from translator.export import _STANDALONE

    probe = _STANDALONE.split("import tensorflow as tf")[0] + "import translator\n"
    r = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode != 0
    assert "translator is not importable" in r.stderr


def test_align_signature_equals_python_api(tiny_attention_run, tiny_attention_export):
    """Attention models export an `align` signature, so `serve EXPORT_DIR` draws heatmaps."""
    import numpy as np

    from translator.export import load_export_backend
    from translator.translate import Translator

    backend = load_export_backend(tiny_attention_export)
    assert backend.has_attention
    api = Translator.load(tiny_attention_run)
    for sentence in [*_test_sources(tiny_attention_run, 3), "", "Hallo  Welt"]:
        got = backend.align(sentence)
        want = api.align(sentence, beam_size=4, length_penalty=0.6, batch_size=7)
        assert got["source_tokens"] == want.source_tokens
        assert got["target_tokens"] == want.target_tokens
        assert got["translation"] == want.translation
        np.testing.assert_allclose(
            np.array(got["attention"]).reshape(want.attention.shape), want.attention, atol=1e-6
        )


def test_a_sampling_config_is_not_exported_silently_as_greedy(tiny_attention_run, tmp_path):
    from translator.config import DecodeConfig
    from translator.export import ExportError, ExportSettings

    with pytest.raises(ExportError, match="decode.sampling_topk"):
        ExportSettings.from_decode(DecodeConfig(sampling_topk=5))
    # --beam-size chooses beam search over the config's sampling.
    assert ExportSettings.from_decode(DecodeConfig(sampling_topk=5), beam_size=4).beam_size == 4


@edge_cases_warn
def test_greedy_export_refills_its_rows_in_windows_as_the_python_api(tiny_attention_run, tmp_path):
    """Greedy search in batches of 4: the export cuts the same windows of length-sorted sentences
    (several, some with more than one batch, the long inputs alone) and refills its rows as
    `Translator` does: the same strings and scores."""
    from translator.data.batching import length_sorted_windows
    from translator.data.corpus import normalize
    from translator.export import check_export, export_run
    from translator.translate import WINDOW_BATCHES, WINDOW_PADDING, WINDOW_TOKENS, Translator

    sentences = _test_sources(tiny_attention_run) + EDGE_CASES
    encoded = Translator.load(tiny_attention_run).src_tokenizer.encode_batch(
        [normalize(s) for s in sentences]
    )
    lengths = [len(ids) for ids in encoded if ids]
    windows = length_sorted_windows(lengths, 4, WINDOW_BATCHES * 4, WINDOW_PADDING, WINDOW_TOKENS)
    assert len(windows) >= 3 and max(len(w) for w in windows) > 8 and len(windows[0]) < 8

    out = export_run(tiny_attention_run, tmp_path / "greedy4", beam_size=1, batch_size=4)
    report = check_export(out, sentences)
    assert report.passed, report.mismatches
    assert report.max_score_difference == 0.0


@edge_cases_warn
@pytest.mark.parametrize("beam_size", [1, 3])
def test_export_decodes_its_groups_in_several_streams_as_the_python_api(
    tiny_attention_run, tmp_path, beam_size
):
    """`decode.workers` 3: the graph decodes every third window (greedy) or batch (beam) in
    each of three loops at once; the same strings and scores as the Python API, also when a
    loop has nothing to decode (one sentence, only empty ones, none)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    from translator.export import check_export, export_run, read_export_info
    from translator.translate import Translator

    out = export_run(
        tiny_attention_run, tmp_path / "w3", beam_size=beam_size, batch_size=4, workers=3
    )
    assert read_export_info(out)["decode"]["workers"] == 3
    sentences = _test_sources(tiny_attention_run) + EDGE_CASES
    report = check_export(out, sentences)
    assert report.passed, report.mismatches
    assert report.max_score_difference == 0.0
    fn = tf.saved_model.load(str(out)).signatures["serving_default"]
    t = Translator.load(tiny_attention_run)
    for few in ([sentences[0]], ["", "  "], []):
        got = fn(text=tf.constant(few, tf.string))
        want = t.translate_nbest(few, n_best=1, beam_size=beam_size, batch_size=4)
        texts = [x.decode("utf-8") for x in got["translation"].numpy().tolist()]
        assert texts == [w[0][0] for w in want]
        assert got["score"].numpy().tolist() == pytest.approx([w[0][1] for w in want], abs=0)


@edge_cases_warn
def test_a_model_without_attention_exports_without_align(tiny_run, tmp_path):
    from translator.export import check_export, export_run, read_export_info

    out = export_run(tiny_run, tmp_path / "plain", beam_size=3, batch_size=5)
    assert "align" not in read_export_info(out)["signatures"]
    report = check_export(out, _test_sources(tiny_run, 20) + EDGE_CASES)
    assert report.passed, report.mismatches


def test_out_dirs_that_cannot_be_an_export_fail_before_any_work(
    tiny_attention_run, tmp_path, monkeypatch, capsys
):
    """An empty OUT_DIR, the working directory (`.`) or one holding it, and a place the system
    will not write in (it passes the permission check: /proc) are one line each, and leave
    nothing behind."""
    from translator.pipelines.cli import main

    from translator.export import ExportError, export_run

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out, words in (("", "OUT_DIR is empty"), (".", "is the working directory"),
                       ("..", "is the working directory or holds it")):  # fmt: skip
        with pytest.raises(ExportError, match=words):
            export_run(tiny_attention_run, out, force=True)
    assert main(["export", str(tiny_attention_run), "/proc/no-such-export"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("translator: error: OUT_DIR /proc/no-such-export: cannot write in /proc")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [work] and not any(work.iterdir())


def test_an_export_that_another_one_wrote_meanwhile_is_not_replaced(tmp_path):
    """Two exports to one OUT_DIR at once each write their own hidden directory; the one
    finishing second replaces the other's only with --force (the check at the start cannot
    see an export that is still being written)."""
    from translator.export import ExportError, _replace_dir

    target, new = tmp_path / "out", tmp_path / ".out.partial-1"
    new.mkdir()
    (new / "saved_model.pb").write_text("new")
    target.mkdir()
    (target / "saved_model.pb").write_text("theirs")
    with pytest.raises(ExportError, match="written by someone else while this export ran"):
        _replace_dir(new, target, False, target)
    assert (target / "saved_model.pb").read_text() == "theirs"
    _replace_dir(new, target, True, target)
    assert (target / "saved_model.pb").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_export_flags_are_named_and_an_empty_check_file_fails(tiny_attention_run, tmp_path, capsys):
    from translator.pipelines.cli import main

    assert main(["export", str(tiny_attention_run), str(tmp_path / "a"), "--beam-size", "0"]) == 2
    assert capsys.readouterr().err.startswith(
        "translator: error: --beam-size (decode.beam_size): must be from 1 to 1000"
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert (
        main(["export", str(tiny_attention_run), str(tmp_path / "b"), "--check", str(empty)]) == 2
    )
    assert "has no sentences" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_server_refuses_an_export_without_its_decode_options(tiny_attention_export, tmp_path):
    """The options fixed in the graph come from translator_export.json: without them the server
    would refuse every request, so it does not start (a clear error naming the file)."""
    from translator.export import EXPORT_INFO, ExportError, load_export_backend

    copy = tmp_path / "export"
    shutil.copytree(tiny_attention_export, copy)
    info = json.loads((copy / EXPORT_INFO).read_text(encoding="utf-8"))
    (copy / EXPORT_INFO).write_text(json.dumps({**info, "decode": {"beam_size": None}}))
    with pytest.raises(ExportError, match=rf"{EXPORT_INFO}: decode is damaged \(decode.beam_size"):
        load_export_backend(copy)
    (copy / EXPORT_INFO).unlink()
    with pytest.raises(ExportError, match=rf"{EXPORT_INFO} is missing: it records the decoding"):
        load_export_backend(copy)


def test_the_export_backend_keeps_the_best_hypothesis_whatever_its_score(tiny_attention_export):
    """Unused n-best slots (score -inf) are dropped, but never every hypothesis of a sentence."""
    import tensorflow as tf

    from translator.export import load_export_backend

    backend = load_export_backend(tiny_attention_export)
    backend._nbest = lambda text: {
        "hypotheses": tf.constant([[b"a", b"b", b""]] * int(text.shape[0])),
        "scores": tf.constant([[-float("inf"), -1.0, -float("inf")]] * int(text.shape[0])),
    }
    got = backend.translate(["x", "y"], beam_size=4, n_best=3, length_penalty=0.6)
    assert got == [[("a", -float("inf")), ("b", -1.0)]] * 2


def test_a_run_command_on_an_export_or_a_file_says_what_it_was_given(
    tiny_attention_export, tiny_attention_run, tmp_path
):
    """Not "has no trained model; run translator run CONFIG --run-dir EXPORT" (which would write a
    run into the export)."""
    r = run_main("translate", tiny_attention_export, "Hallo.")
    assert r.returncode == 2
    assert f"{tiny_attention_export} is an export (a SavedModel), not a run directory" in r.stderr
    assert "translator serve" in r.stderr
    r = run_main("translate", tiny_attention_run / "config.yaml", "Hallo.")
    assert r.returncode == 2 and "run directory is a file, not a run directory" in r.stderr
    run = tmp_path / "run"
    shutil.copytree(tiny_attention_run, run)
    (run / "config.yaml").unlink()
    r = run_main("translate", run, "Hallo.")
    assert r.returncode == 2 and "holds a model but not the config that describes it" in r.stderr
    (run / "config.yaml").write_text("", encoding="utf-8")  # emptied: not read as the defaults
    r = run_main("translate", run, "Hallo.")
    assert (
        r.returncode == 2 and "config.yaml is empty: the run's resolved config is lost" in r.stderr
    )


def test_a_full_disk_while_saving_is_one_line_and_leaves_nothing(
    tiny_attention_run, tmp_path, monkeypatch
):
    import tensorflow as tf

    from translator.export import ExportError, export_run

    def full(*args, **kwargs):
        raise tf.errors.UnknownError(
            None, None, "{{function_node __wrapped__SaveV2}} x; No space left on device [Op:SaveV2]"
        )

    monkeypatch.setattr(tf.saved_model, "save", full)
    with pytest.raises(ExportError) as e:
        export_run(tiny_attention_run, tmp_path / "out")
    assert str(e.value) == (
        f"OUT_DIR {tmp_path / 'out'}: cannot write the SavedModel (no space left on device)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_check_against_a_model_replaced_since_the_export_says_so(tiny_attention_run, tmp_path):
    """An export checked while a training run replaced its run's model.keras reported 0/40
    identical translations (a broken export); the export records the model's digest, and the
    check compares with that model only."""
    from translator.export import ExportError, check_export, export_run
    from translator.io import file_digest

    run = shutil.copytree(tiny_attention_run, tmp_path / "run")
    out = export_run(run, tmp_path / "export", beam_size=1)
    info = json.loads((out / "translator_export.json").read_text())
    assert info["model_digest"] == file_digest(run / "model.keras")
    from translator.models.saving import load_model, save_model

    model = load_model(run / "model.keras")  # as training would replace it: other weights
    model.weights[0].assign(model.weights[0] + 0.01)
    save_model(model, run / "model.keras")
    with pytest.raises(ExportError, match="is not the model .* was exported from"):
        check_export(out, ["Das Haus."])
