"""Bad input through the CLI: one clear line, exit code 2, nothing passed off as complete; and a
quiet command line (no TensorFlow start-up lines, no progress-bar frames in a log).

Each kind of error is met once in a subprocess, as a shell sees it (its exit status, and nothing
before the error line, not even TensorFlow's start-up lines); the other cases of the kind run `main`
in this process (`run_main`), which saves a TensorFlow import per case."""

import shutil
import subprocess
import sys

import pytest

from ..conftest import ROOT, TINY
from .helpers import cli, run_main


def _clean_error(r, *fragments):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("translator: error:"), r.stderr
    for fragment in fragments:
        assert str(fragment) in r.stderr, (fragment, r.stderr)


def test_decoding_options_are_checked_before_the_model_loads(tiny_run):
    _clean_error(
        cli("translate", tiny_run, "x", "--length-penalty", "nan"), "decode.length_penalty"
    )
    _clean_error(cli("translate", tiny_run, "x", "--beam-size", "0"), "decode.beam_size")
    _clean_error(cli("translate", tiny_run, "x", "--beam-size", "2", "--n-best", "3"), "n_best")
    r = run_main("translate", tiny_run, "x", "--workers", "0")  # argparse's own error line
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "error: argument --workers: must be at least 1, got 0" in r.stderr, r.stderr


def test_input_and_output_problems_are_one_line_errors(tiny_run, tmp_path):
    _clean_error(run_main("translate", tiny_run, "--input", tmp_path), str(tmp_path), "directory")
    # Invalid UTF-8 on stdin: the line is named, and the output file keeps the complete inputs only.
    out = tmp_path / "out.txt"
    r = subprocess.run(
        [sys.executable, "-m", "translator.pipelines.cli", "translate", str(tiny_run)]
        + ["--output", str(out)],
        input=b"Das Haus.\n\xff\xfe kaputt\n",
        capture_output=True,
        timeout=600,
    )
    r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(), r.stderr.decode())
    _clean_error(r, "<stdin>:2: invalid UTF-8", f"the 1 lines before it are translated in {out}")
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1  # (they were dropped)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Das Haus.\nDer Hund.\n\xff kaputt\n")
    r = run_main("translate", tiny_run, "--input", bad)
    _clean_error(r, f"{bad}:3: invalid UTF-8", "the 2 lines before it are translated")
    assert len(r.stdout.splitlines()) == 2
    # An output that cannot be written: a full disk, a path under a file.
    _clean_error(run_main("translate", tiny_run, "Das Haus.", "--output", "/dev/full"), "/dev/full")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _clean_error(
        run_main("translate", tiny_run, "Das Haus.", "--output", blocker / "out.txt"), blocker
    )


def test_output_with_sentences_writes_the_file(tiny_run, tmp_path):
    out = tmp_path / "out.txt"
    r = cli("translate", tiny_run, "Das Haus.", "Der Hund.", "--output", out)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_a_byte_order_mark_is_not_part_of_the_first_sentence(tiny_run, tmp_path):
    src = tmp_path / "bom.txt"
    src.write_bytes("\ufeffDas Haus.\nDas Haus.\n".encode())
    r = run_main("translate", tiny_run, "--input", src)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == second


def test_no_tensorflow_start_up_lines_and_no_progress_frames_in_a_log(tmp_path):
    r = cli("run", TINY, "--run-dir", tmp_path / "run", "--set", "train.epochs=1", cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for noise in ("I0000", "oneDNN", "cuda", "absl::InitializeLog"):
        assert noise not in r.stderr and noise not in r.stdout, noise
    assert "\r" not in r.stdout
    assert "epoch 1:" in r.stdout
    r = cli("--verbose", "translate", tmp_path / "run", "Das Haus.")
    assert r.returncode == 0 and "oneDNN" in r.stderr


def test_config_file_problems_are_one_line_errors(tmp_path):
    _clean_error(cli("prepare", tmp_path), str(tmp_path), "directory")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    _clean_error(run_main("prepare", empty), "empty config")
    for override, key in (
        ("train.max_minutes=-5", "train.max_minutes"),
        ("train.patience=0", "train.patience"),
        ("decode.length_penalty=.nan", "decode.length_penalty"),
    ):
        _clean_error(run_main("prepare", TINY, "--set", override), key)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: x\ndata:\n  corpus: tsv  # Gr\xfc\xdfe\n")
    _clean_error(
        run_main("prepare", latin1), f"{latin1}:3: not valid UTF-8 (byte 0xfc at column 20)"
    )
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbf" + TINY.read_bytes())
    r = run_main("prepare", bom, "--run-dir", tmp_path / "run")
    assert r.returncode == 0, r.stderr


def test_an_unknown_tfds_name_is_one_short_line_with_the_closest_names(tmp_path):
    r = cli(
        "prepare", TINY, "--set", "data.corpus=tfds:ted_hrlr_translat/pt_to_en", cwd=tmp_path
    )  # in its own directory: the default run directory (runs/tiny) is made before the error
    _clean_error(r, "ted_hrlr_translat", "closest names: ted_hrlr_translate")
    assert len(r.stderr.splitlines()) == 1


def test_a_config_that_disagrees_with_its_model_is_a_warning(tiny_run, tmp_path):
    import shutil

    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["decoder"]["dropout"] = 0.5
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    r = cli("translate", run_dir, "Das Haus.")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    assert "warning:" in r.stderr and "describes another model" in r.stderr


def test_outputs_that_would_erase_something_are_refused_before_any_work(tiny_run, tmp_path):
    """The input as its own output, an earlier output replaced by a run that fails at once, and
    `--force` onto a directory that holds the run or is not an earlier export: refused, nothing
    touched."""
    src = tmp_path / "in.txt"
    src.write_text("Das Haus.\nDer Hund.\n", encoding="utf-8")
    _clean_error(run_main("translate", tiny_run, "--input", src, "--output", src), "input file")
    assert src.read_text(encoding="utf-8") == "Das Haus.\nDer Hund.\n"
    # score too (it used to score the pairs and write the scores over them), also through a link
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Das Haus.\tThe house.\n", encoding="utf-8")
    (tmp_path / "link.tsv").symlink_to(pairs)
    for out in (pairs, tmp_path / "link.tsv"):
        r = run_main("score", tiny_run, "--input", pairs, "--output", out)
        _clean_error(r, f"--output {out} is the input file {pairs}")
    assert pairs.read_text(encoding="utf-8") == "Das Haus.\tThe house.\n"
    # plot: never over a run's own metrics.csv
    metrics = tiny_run / "logs" / "metrics.csv"
    before = metrics.read_bytes()
    _clean_error(run_main("plot", tiny_run, "--output", metrics), "is the input file")
    assert metrics.read_bytes() == before
    previous = tmp_path / "previous.txt"
    previous.write_text("an earlier translation\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe kaputt\nDas Haus.\n")
    r = run_main("translate", tiny_run, "--input", bad, "--output", previous)
    _clean_error(r, f"{bad}:1: invalid UTF-8", "as it was")
    assert previous.read_text(encoding="utf-8") == "an earlier translation\n"
    _clean_error(run_main("translate", tiny_run, "Das Haus.", "--resume"), "--resume")
    # export --force: never a directory holding the run, never a directory of other files.
    parent = tmp_path / "parent"
    run = parent / "run"
    shutil.copytree(tiny_run, run)
    _clean_error(run_main("export", run, parent, "--force"), "holds the run directory")
    assert (run / "model.keras").is_file()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    _clean_error(run_main("export", tiny_run, notes, "--force"), "not written by this command")
    assert (notes / "notes.txt").read_text() == "keep me" and (tiny_run / "model.keras").is_file()


def test_unwritable_output_paths_are_one_line_errors_before_the_work(tiny_run, tmp_path):
    """A directory where a file goes, a file where a directory goes, a file as a parent: one
    line naming the option, checked before training, decoding or benchmarking."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _clean_error(run_main("plot", tiny_run, "--output", tmp_path), "--output", "is a directory")
    _clean_error(
        run_main("evaluate", tiny_run, "--output-dir", blocker), "--output-dir", "is a file"
    )
    _clean_error(run_main("synth-corpus", blocker / "x.tsv", "--pairs", "5"), "is a file, not")
    _clean_error(run_main("run", TINY, "--run-dir", blocker), "--run-dir", "is a file")
    _clean_error(
        run_main("translate", tiny_run, "Das Haus.", "--plot-attention", tmp_path),
        "--plot-attention",
    )
    _clean_error(
        run_main("translate", tiny_run, "Das Haus.", "--plot-attention", tmp_path / "a.txt"),
        "--plot-attention",
        "cannot write a figure as .txt",
    )
    for args in (
        ("--json", tmp_path),
        ("--json", blocker / "x.json"),
        ("--train-steps", "-3"),
        ("--train-steps", "0"),
        ("--naive-sentences", "-1"),
    ):
        r = run_main("bench", tiny_run, *args)
        assert r.returncode == 2 and args[0] in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_sentence_argument_that_is_not_utf8_is_named(tiny_run):
    """A byte that is not UTF-8 in an argument reaches Python as a lone surrogate
    (surrogateescape): one line naming the argument and the byte, not a tokenizer traceback."""
    r = run_main("translate", tiny_run, "Gut.", "Das \udcff Haus.")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == (
        "translator: error: SENTENCE 2 is not valid UTF-8 (byte 0xff at character 5); give "
        "sentences in UTF-8 (is the terminal's encoding UTF-8?), or use --input FILE"
    )


def test_a_set_override_that_is_not_utf8_is_named():
    """The same for `--set`: one line naming the override and the byte (PyYAML's own message was
    two lines about an 'unacceptable character #xdcff')."""
    for override, what in (("train.seed=1\udcff", "value"), ("train.se\udcffed=1", "key")):
        r = run_main("run", TINY, "--set", override)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"the {what} is not valid UTF-8 (byte 0xff at character" in r.stderr, r.stderr
        assert override.replace("\udcff", "\\xff") in r.stderr


def test_a_directory_path_that_is_not_utf8_is_refused_before_any_work(tiny_run, tmp_path):
    """Linux names may hold any bytes, but TensorFlow and SentencePiece open UTF-8 paths only:
    a run directory, an export or an average there is one line naming it, and nothing is made
    (the tokenize stage used to fail half way with "'utf-8' codec can't encode")."""
    bad = tmp_path / "r\udcff"
    for args, what in (
        (("run", TINY, "--run-dir", bad, "--set", "train.epochs=1"), "run directory"),
        (("translate", bad, "Gut."), "run directory"),
        (("export", tiny_run, bad), "OUT_DIR"),
    ):
        r = run_main(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{what} {tmp_path}/r\\xff is not a UTF-8 path (byte 0xff" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
    # `average --output` checks its directory the same way (pipelines/average_cmd.py).
    from translator.io import OutputPathError, require_utf8_path

    with pytest.raises(OutputPathError, match=r"--output .*r\\xff is not a UTF-8 path"):
        require_utf8_path(bad, "--output")


def test_input_may_be_a_pipe(tiny_run):
    """`--input <(zcat corpus.gz)` (a /dev/fd path, no regular file) is read like a file."""
    import os

    read, write = os.pipe()
    os.write(write, b"Das Haus.\nGut.\n")
    os.close(write)
    try:
        r = run_main("translate", tiny_run, "--input", f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2 and "translated 2 lines" in r.stderr


def test_running_out_of_memory_or_disk_is_one_line_and_resuming_is_said_right():
    """TensorFlow's ResourceExhaustedError (a model or input too large, a full disk) is a user's
    problem, not a bug: one line. After Ctrl-C, the hint says what really resumes."""
    import argparse

    import tensorflow as tf
    from translator.pipelines.cli import _how_to_resume, _resource_error

    oom = tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[64000000,192] and type float"
    )
    assert _resource_error(oom).startswith(
        "out of memory (OOM when allocating tensor with shape[64000000,192]): the model"
    )
    full = tf.errors.ResourceExhaustedError(
        None, None, "r/logs/tensorboard/train/events.out; No space left on device [Op:X]"
    )
    assert _resource_error(full) == (
        "no space left on device writing r/logs/tensorboard/train/events.out"
    )
    assert _resource_error(ValueError("a bug")) is None

    def hint(command, **options):
        return _how_to_resume(argparse.Namespace(command=command, **options))

    assert hint("train", force=False) == "; rerun the same command to resume"
    assert hint("evaluate", config="c.yaml", force=False) == "; rerun the same command to resume"
    assert hint("evaluate", targets=["runs/a"]) == ""
    assert "without --force" in hint("train", force=True)
    assert hint("translate", output="out.txt", resume=False) == (
        "; rerun it with --resume to continue out.txt where it stopped"
    )
    assert hint("translate", output=None, resume=False) == ""
    assert hint("evaluate") == ""


def test_synth_corpus_replaces_a_file_only_with_force(tmp_path):
    mine = tmp_path / "mine.tsv"
    mine.write_text("Hallo.\tHello.\n", encoding="utf-8")
    _clean_error(run_main("synth-corpus", mine, "--pairs", "3"), "exists", "--force")
    assert mine.read_text(encoding="utf-8") == "Hallo.\tHello.\n"
    r = run_main("synth-corpus", mine, "--pairs", str(10**15))
    assert r.returncode == 2 and "--pairs: must be 1 to 1,000,000,000" in r.stderr, r.stderr
    assert run_main("synth-corpus", mine, "--pairs", "3", "--force").returncode == 0
    assert len(mine.read_text(encoding="utf-8").splitlines()) == 3


def test_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    """The `translator` script's entry point: an interrupt before `main` handles its own (the
    imports take about a second) ends with exit 130 and one line, not a traceback."""
    import translator.pipelines.cli as cli_module
    import translator.pipelines.launch as launch
    from translator.pipelines.launch import main

    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "main", interrupted)
    monkeypatch.setattr(launch, "busy_translating", lambda: False)  # never os._exit in pytest
    assert main() == 130
    assert capsys.readouterr().err == "translator: interrupted\n"
