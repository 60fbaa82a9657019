"""The `translator` command's entry point. Loading the command line imports TensorFlow's
neighbours and takes about a second: Ctrl-C then ends it with one line, as Ctrl-C during a command
does, instead of a traceback through the imports."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from translator.pipelines.cli import main as run

        return run()
    except KeyboardInterrupt:  # before the command's own handling began (or after it ended)
        print("translator: interrupted", file=sys.stderr)
        return 130
