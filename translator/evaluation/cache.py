"""The hypothesis cache of a run: translations already made, so that evaluating again is cheap.

Each entry lives in `RUN_DIR/eval/cache/` as `<key>.txt` (one hypothesis a line) and `<key>.json`
(its metadata: key, model digest, test data, decoding settings, sentences, seconds,
sentences/s, creation time). The key fingerprints the model and tokenizer files, the test sources
and the decoding settings, so an entry is never reused for anything else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translator.io import atomic_write_json, atomic_write_text, fingerprint, read_json

if TYPE_CHECKING:
    from translator.rundir import RunDir


def cache_key(model_digest: str, sources: Sequence[str], decode: Mapping[str, Any]) -> str:
    """The key of the hypotheses of a model (digest of its files) for sources and settings."""
    return fingerprint("eval-hypotheses", model_digest, fingerprint(list(sources)), dict(decode))


def _paths(run: RunDir, key: str) -> tuple[Path, Path]:
    return run.eval_cache / f"{key}.txt", run.eval_cache / f"{key}.json"


def read_cache(run: RunDir, key: str, n: int) -> tuple[list[str], dict] | None:
    """The `n` cached hypotheses under `key` and their metadata, or None (missing, unreadable,
    or not `n` sentences)."""
    txt, meta_path = _paths(run, key)
    if not (txt.is_file() and meta_path.is_file()):
        return None
    try:
        meta = read_json(meta_path)
        hyps = txt.read_text(encoding="utf-8").split("\n")[:-1]
    except (OSError, ValueError):
        return None
    if len(hyps) != n or meta.get("sentences") != n:
        return None
    return hyps, meta


def write_cache(
    run: RunDir,
    key: str,
    hypotheses: Sequence[str],
    *,
    model_digest: str | None,
    test_data: str,
    decode: Mapping[str, Any],
    seconds: float,
    sentences_per_s: float,
) -> None:
    """Store hypotheses (newlines inside one become spaces) and their metadata, atomically."""
    txt, meta_path = _paths(run, key)
    meta = {
        "key": key,
        "model": model_digest,
        "test_data": test_data,
        "decode": dict(decode),
        "sentences": len(hypotheses),
        "seconds": round(seconds, 3),
        "sentences_per_s": round(sentences_per_s, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(txt, "".join(h.replace("\n", " ") + "\n" for h in hypotheses))
    atomic_write_json(meta_path, meta)
