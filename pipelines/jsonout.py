"""`--json [FILE]` of the bench commands: `--json` alone prints only the JSON (for `| jq`),
`--json FILE` writes it atomically and says so."""

from __future__ import annotations

import argparse
import json

from translator.io import OutputPathError, check_output_path


def json_target(text: str) -> str:
    """argparse `type=` of `--json FILE`: the file must be writable (checked before the work,
    so a bad path is one line at once rather than a traceback after a long benchmark)."""
    try:
        check_output_path(text, "--json")
    except OutputPathError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_json_argument(p: argparse.ArgumentParser, help: str) -> None:
    """`--json [FILE]`: `--json` alone prints only JSON on stdout; with FILE writes it there."""
    p.add_argument("--json", nargs="?", const="-", type=json_target, metavar="FILE", help=help)


def emit_json(data, target: str | None, *, ensure_ascii: bool = True) -> None:
    """Print `data` as JSON (`target == "-"`), write it to the file `target`, or do nothing."""
    if target is None:
        return
    text = json.dumps(data, indent=2, ensure_ascii=ensure_ascii)
    if target == "-":
        print(text)
        return
    from translator.io import atomic_write_text

    atomic_write_text(target, text + "\n")
    print(f"wrote {target}")
