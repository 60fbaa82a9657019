"""`--json [FILE]` of the bench commands: `--json` alone prints only the JSON (for `| jq`),
`--json FILE` writes it atomically and says so."""

from __future__ import annotations

import json


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
