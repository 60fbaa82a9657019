"""Shared helpers of the pipeline tests: the CLI run as a subprocess, or in this process."""

import contextlib
import io
import os
import subprocess
import sys
import warnings


def cli(*args, input=None, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "translator.pipelines.cli", *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def run_main(*args, input=None, cwd=None):
    """`translator.pipelines.cli.main` in this process, as `cli` runs it in a subprocess: its exit
    code (from a return or a SystemExit) and what it printed, as a CompletedProcess. For checks that
    need no process of their own; it saves the TensorFlow import of a new process (seconds). What
    only a process shows (its exit status in a shell, TensorFlow's start-up lines on file
    descriptor 2, signals) stays with `cli`."""
    from translator.pipelines.cli import main

    argv = [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode("utf-8")
    stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    saved_stdin, saved_showwarning, saved_cwd = sys.stdin, warnings.showwarning, os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = stdin
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help (0) and usage errors (2)
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                    code = 1
                else:
                    code = e.code or 0
    finally:
        sys.stdin, warnings.showwarning = saved_stdin, saved_showwarning
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
