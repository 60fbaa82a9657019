"""The command line (pipelines/cli.py): help, translate, evaluate, clear errors, decoding options."""

import json

from ..conftest import TINY
from .helpers import cli, run_main


def test_cli_help():
    for cmd in (
        ["--help"],
        ["run", "--help"],
        ["translate", "--help"],
        ["evaluate", "--help"],
        ["bench", "--help"],
    ):
        r = cli(*cmd)
        assert r.returncode == 0 and "usage:" in r.stdout


def test_cli_translate_sentences_stdin_and_files(tiny_run, tmp_path):
    # Sentences and files in this process; stdin from a pipe, in a subprocess, as a shell gives it.
    r = run_main("translate", tiny_run, "Das Auto steht in der Garage.", "Er ist Engländer.")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    r2 = cli("translate", tiny_run, input="Das Auto steht in der Garage.\n\nEr ist Engländer.\n")
    assert r2.returncode == 0, r2.stderr
    lines = r2.stdout.split("\n")[:-1]
    assert len(lines) == 3 and lines[1] == ""
    assert lines[0] == r.stdout.splitlines()[0]
    src = tmp_path / "in.txt"
    src.write_text("Das Auto steht in der Garage.\nEr ist Engländer.\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    r3 = run_main("translate", tiny_run, "--input", src, "--output", out)
    assert r3.returncode == 0, r3.stderr
    assert out.read_text(encoding="utf-8").splitlines() == r.stdout.splitlines()


def test_cli_evaluate_any_tsv(tiny_run, tmp_path):
    test = tmp_path / "mine.tsv"
    test.write_text("Das Auto steht in der Garage.\tThe car is in the garage.\n", encoding="utf-8")
    r = run_main("evaluate", tiny_run, "--test", test, "--output-dir", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "BLEU" in r.stdout and "chrF" in r.stdout
    assert (tmp_path / "out" / "mine.scores.json").is_file()


def test_cli_errors_are_clear(tiny_run, tmp_path):
    # The exit status as a shell sees it, in a subprocess; the other messages from `main` here.
    r = cli("run", TINY, "--set", "train.epoch=3", "--run-dir", tmp_path / "x")
    assert r.returncode == 2
    assert "train.epoch" in r.stderr and "epochs" in r.stderr and "Traceback" not in r.stderr
    r = run_main("translate", tmp_path)
    assert r.returncode == 2 and "train" in r.stderr and "Traceback" not in r.stderr
    r = run_main("evaluate", tiny_run, "--test", tmp_path / "missing.tsv")
    assert r.returncode == 2 and "missing.tsv" in r.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\n", encoding="utf-8")
    r = run_main("evaluate", tiny_run, "--test", bad)
    assert r.returncode == 2 and f"{bad}:2" in r.stderr
    r = run_main("run", TINY, "--stages", "prepare,fly", "--run-dir", tmp_path / "y")
    assert r.returncode == 2 and "fly" in r.stderr and "tokenize" in r.stderr
    r = run_main("run", TINY, "--stages", " , ", "--run-dir", tmp_path / "y")
    assert r.returncode == 2 and "--stages: no stage given; valid choices: prepare" in r.stderr
    r = run_main("translate", tiny_run, "a", "b", "--plot-attention", tmp_path / "a.png")
    assert r.returncode == 2 and "exactly one SENTENCE" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_stage_takes_decoding_options_from_the_command_line(tiny_run, tmp_path, capsys):
    import shutil

    from translator.pipelines.cli import main

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    assert (
        main(
            [
                "evaluate",
                str(TINY),
                "--run-dir",
                str(run),
                "--beam-size",
                "3",
                "--length-penalty",
                "0.5",
            ]
        )
        == 0
    )
    report = json.loads((run / "eval" / "scores.json").read_text())
    assert report["decode"]["beam_size"] == 3 and report["decode"]["length_penalty"] == 0.5
    assert "[evaluate] running" in capsys.readouterr().out
