"""Streaming file translation: chunks in input order, n-best lines, --resume."""

import io

import pytest

from translator.translate import Translator
from translator.translate_file import translate_stream

from .pipelines.helpers import run_main

SENTENCES = [
    "Das Auto steht in der Garage.",
    "Er ist Engländer.",
    "",
    "Mir gegenüber war er immer freundlich.",
    "Jeder Krämer lobt seine Ware.",
    "Es ist Zeit, dass du etwas gegen deine Verschuldung unternimmst.",
    "Ich habe einen Panda als persönlichen Avatar im Chatroom genommen.",
]


def test_chunks_keep_input_order(tiny_run):
    t = Translator.load(tiny_run)
    out = io.StringIO()
    translate_stream(t, iter(SENTENCES), out, {}, chunk_lines=2)
    assert out.getvalue().split("\n")[:-1] == t.translate(SENTENCES)


def test_cli_workers_option_translates_the_same(tiny_run, tmp_path):
    """`--workers N` (decode.workers): batches decoded at once; the file is the same."""
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES * 6), encoding="utf-8")
    files = []
    for workers in ("1", "3"):
        out = tmp_path / f"out{workers}.txt"
        options = ("--input", src, "--output", out, "--batch-size", "2", "--beam-size", "2")
        r = run_main("translate", tiny_run, *options, "--workers", workers)
        assert r.returncode == 0, r.stderr
        files.append(out.read_text(encoding="utf-8"))
    assert files[0] == files[1] and len(files[0].split("\n")) == len(SENTENCES) * 6 + 1


def test_n_best_lines(tiny_run):
    t = Translator.load(tiny_run)
    out = io.StringIO()
    translate_stream(t, iter(SENTENCES[:2]), out, {"beam_size": 3, "n_best": 2}, chunk_lines=1)
    rows = [line.split("\t") for line in out.getvalue().splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 1]
    scores = [float(r[1]) for r in rows]
    assert scores[0] >= scores[1] and scores[2] >= scores[3]


def test_resume_gives_the_same_file(tiny_run, tmp_path):
    t = Translator.load(tiny_run)
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    full = tmp_path / "full.txt"
    with open(src, encoding="utf-8") as f:
        translate_stream(t, f, None, {}, output_path=full, chunk_lines=2)
    expected = full.read_text(encoding="utf-8")
    # An interrupted run: three whole lines and half of the fourth were written.
    lines = expected.split("\n")
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(lines[:3]) + "\n" + lines[3][:2], encoding="utf-8")
    with open(src, encoding="utf-8") as f:
        translate_stream(t, f, None, {}, output_path=partial, resume=True, chunk_lines=2)
    assert partial.read_text(encoding="utf-8") == expected


def test_resume_n_best_drops_an_incomplete_input(tiny_run, tmp_path):
    t = Translator.load(tiny_run)
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES[:4]), encoding="utf-8")
    options = {"beam_size": 2, "n_best": 2}
    full = tmp_path / "full.txt"
    with open(src, encoding="utf-8") as f:
        translate_stream(t, f, None, options, output_path=full)
    expected = full.read_text(encoding="utf-8")
    partial = tmp_path / "partial.txt"
    partial.write_text("".join(expected.splitlines(keepends=True)[:3]), encoding="utf-8")
    with open(src, encoding="utf-8") as f:
        translate_stream(t, f, None, options, output_path=partial, resume=True)
    assert partial.read_text(encoding="utf-8") == expected


def test_cli_n_best_and_resume(tiny_run, tmp_path):
    """`translator translate` (its `main`, in this process; tests/pipelines/test_cli.py runs it in a
    subprocess too)."""
    r = run_main(
        "translate", tiny_run, "--beam-size", "4", "--n-best", "3", SENTENCES[0], SENTENCES[1]
    )
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(rows) == 6 and [int(x[0]) for x in rows] == [0, 0, 0, 1, 1, 1]
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    out = tmp_path / "out.txt"
    out.write_text("stale first line\n", encoding="utf-8")
    r = run_main("translate", tiny_run, "--input", src, "--output", out, "--resume")
    assert r.returncode == 0, r.stderr
    lines = out.read_text(encoding="utf-8").split("\n")[:-1]
    assert lines[0] == "stale first line" and len(lines) == len(SENTENCES)
    assert "translated 7 lines" in r.stderr


def test_resume_refuses_an_output_that_is_not_this_inputs_translation(tiny_run, tmp_path):
    """Before anything is written: more translated inputs than the input has, bytes that are
    not UTF-8, lines that are no n-best output, or an n-best file with other options."""
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES[:2]), encoding="utf-8")
    out = tmp_path / "out.txt"
    nbest = ["--beam-size", "2", "--n-best", "2"]
    cases = [
        (b"a\nb\nc\n", [], f"{out} holds 3 translated inputs but {src} has only 2 lines"),
        (b"a\n\xff\n", [], f"{out}:2: not UTF-8; it is not an output of translate"),
        (b"0\t-1.0\tx\nplain\n", nbest, f"{out}:2: expected INDEX<TAB>SCORE<TAB>HYPOTHESIS"),
        (b"0\t-1\tx\n0\t-2\ty\n0\t-3\tz\n", nbest, f"{out}:3: input index 0 after 0"),
        (b"1\t-1\tx\n", nbest, f"{out}:1: input index 1 first"),
        (b"-1\t-1\tx\n", nbest, f"{out}:1: input index -1 first"),
    ]
    for content, options, message in cases:
        out.write_bytes(content)
        r = run_main("translate", tiny_run, "--input", src, "--output", out, "--resume", *options)
        assert r.returncode == 2 and message in r.stderr, (content, r.stderr)
        assert "Traceback" not in r.stderr
        assert out.read_bytes() == content  # as it was
    # A partial last line is translated again (the file is cut back first).
    out.write_bytes(b"first\nsec")
    r = run_main("translate", tiny_run, "--input", src, "--output", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8").split("\n")[:-1] == [
        "first",
        Translator.load(tiny_run).translate(SENTENCES[1]),
    ]


def test_an_interrupted_translation_does_not_wait_for_the_chunks_in_flight(tmp_path):
    """Ctrl-C while a chunk is being translated: `translate_stream` returns at once (it waited
    for the chunks in flight, then dropped them), with the chunks before it written."""
    import threading
    import time

    release = threading.Event()

    class Stalling:
        decode = type("D", (), {"n_best": 1})()

        def translate(self, chunk, **options):
            if chunk[0] != "a":
                release.wait(60)  # the chunk in flight
            return [s.upper() for s in chunk]

    class Interrupting(io.StringIO):
        def write(self, text):
            super().write(text)
            raise KeyboardInterrupt  # the user's Ctrl-C, after the first chunk is out

    sink = Interrupting()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            translate_stream(Stalling(), iter(["a", "b", "c", "d"]), sink, {}, chunk_lines=2)
        assert time.monotonic() - t0 < 5
        assert sink.getvalue() == "A\nB\n"
    finally:
        release.set()


def test_a_failed_write_says_how_many_inputs_are_complete():
    import errno

    from translator.translate_file import OutputError

    class Echo:
        decode = type("D", (), {"n_best": 1})()

        def translate(self, chunk, **options):
            return chunk

    class Full(io.StringIO):
        def write(self, text):
            if self.getvalue():
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)

    with pytest.raises(OutputError, match="the first 2 inputs are complete in it"):
        translate_stream(Echo(), iter(["a", "b", "c", "d"]), Full(), {}, chunk_lines=2)
