"""The `translator` command's entry point. Loading the command line imports TensorFlow's
neighbours and takes about a second: Ctrl-C then ends it with one line, as Ctrl-C during a command
does, instead of a traceback through the imports. After an interrupted command, translation still
running in threads (whose results are dropped) does not hold the exit."""

from __future__ import annotations

import os
import sys
import threading

INTERRUPTED = (130, 143)  # Ctrl-C, SIGTERM


def main() -> int:
    try:
        from translator.pipelines.cli import main as run

        code = run()
    except KeyboardInterrupt:  # before the command's own handling began (or after it ended)
        print("translator: interrupted", file=sys.stderr)
        code = 130
    if code in INTERRUPTED and busy_translating():
        # Python would wait for them at exit (a chunk of 2,000 lines: tens of seconds); the
        # output written so far is flushed and closed, and `--resume` continues it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def busy_translating() -> bool:
    """Whether a thread of `translate`'s chunks or decoding batches is still running."""
    return any(
        t.is_alive() and t.name.startswith(("translator-chunk", "translator-decode"))
        for t in threading.enumerate()
    )
