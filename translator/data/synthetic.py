"""A synthetic parallel corpus of any size, for scale tests: the bundled Ding German–English pairs
(sentences and dictionary phrases), repeated with light noise.

Each pass over the bundled pairs visits them in a seeded random order, and each pair gets at most
one cheap change: a source word dropped, two neighbouring source words swapped, a source word
doubled, the casing of the source's first letter (or of the whole source) changed, or the numbers
of the pair replaced by another number, on both sides alike. A quarter of the pairs stay as
they are. The output is a function of `pairs` and `seed` alone, written in bounded memory (the
bundled pairs, about 95,000, and a buffer of lines).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

from translator.data.corpus import Pair, bundled_path, iter_tsv
from translator.io import atomic_path

_NUMBER = re.compile(r"\d+")
_BUFFER_LINES = 10_000


def bundled_pairs() -> list[Pair]:
    """The bundled corpus' training sentences, then its dictionary phrases (tabs and line breaks
    cannot occur in them)."""
    return [*iter_tsv(bundled_path("train")), *iter_tsv(bundled_path("phrases"))]


def noisy(pair: Pair, rng: random.Random) -> Pair:
    """`pair` with at most one light, plausible change (see the module docstring)."""
    r = rng.random()
    if r < 0.25:
        return pair
    src, tgt = pair.src, pair.tgt
    if r < 0.70:
        words = src.split(" ")
        n = len(words)
        if n < 3:
            return pair
        i = rng.randrange(n - 1)
        if r < 0.40:  # drop a word
            del words[i]
        elif r < 0.55:  # swap two neighbours
            words[i], words[i + 1] = words[i + 1], words[i]
        else:  # a word said twice
            words.insert(i, words[i])
        return Pair(" ".join(words), tgt)
    if r < 0.85:  # casing
        if r < 0.80:
            first = src[:1]
            flipped = first.lower() if first.isupper() else first.upper()
            return Pair(flipped + src[1:], tgt)
        return Pair(src.lower(), tgt)
    # numbers: every number of the pair becomes one other number (on both sides, so it stays a
    # translation); a pair without numbers on both sides stays as it is.
    if not (_NUMBER.search(src) and _NUMBER.search(tgt)):
        return pair
    number = str(rng.randrange(2, 2000))
    return Pair(_NUMBER.sub(number, src), _NUMBER.sub(number, tgt))


def write_synthetic_corpus(
    out_path: str | Path,
    pairs: int,
    seed: int = 1,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Write a TSV of `pairs` pairs made from the bundled corpus repeated with light noise.

    Deterministic: the same `pairs` and `seed` give the same bytes. The file is written
    atomically (a temporary file renamed at the end). `progress(n)` is called after every block
    of `n` pairs written (e.g. a progress bar's `update`). Returns the number of pairs written.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    base = bundled_pairs()
    rng = random.Random(seed)
    written = 0
    order = list(range(len(base)))
    with atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        while written < pairs:
            rng.shuffle(order)
            for start in range(0, len(order), _BUFFER_LINES):
                block = order[start : start + min(_BUFFER_LINES, pairs - written)]
                lines = []
                for i in block:
                    p = noisy(base[i], rng)
                    lines.append(f"{p.src}\t{p.tgt}\n")
                f.write("".join(lines))
                written += len(block)
                if progress is not None:
                    progress(len(block))
                if written >= pairs:
                    break
    return written
