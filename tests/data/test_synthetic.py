"""Tests for translator.data.synthetic: the synthetic corpus is deterministic, well-formed, noisy
and cheap to write."""

import time

from translator.data.corpus import read_tsv
from translator.data.synthetic import bundled_pairs, write_synthetic_corpus


def test_synthetic_corpus_is_deterministic_well_formed_and_fast(tmp_path):
    a, b, c = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "c.tsv"
    t0 = time.perf_counter()
    assert write_synthetic_corpus(a, 30_000, seed=1) == 30_000
    assert time.perf_counter() - t0 < 10  # about 1 s; 5M pairs take well under a minute
    ticks = []
    write_synthetic_corpus(b, 30_000, seed=1, progress=ticks.append)
    write_synthetic_corpus(c, 30_000, seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert sum(ticks) == 30_000
    pairs = read_tsv(a)  # exactly one tab a line, valid UTF-8
    assert len(pairs) == 30_000 and all(p.src and p.tgt for p in pairs)
    base = set(bundled_pairs())
    unchanged = sum(p in base for p in pairs)
    assert 0.3 * len(pairs) < unchanged < 0.9 * len(pairs)  # light noise on the rest
    assert {p.tgt for p in pairs} - {p.tgt for p in base}  # numbers change on both sides
    # More pairs than the bundled corpus holds: it is repeated, each pass in another order.
    small = tmp_path / "small.tsv"
    write_synthetic_corpus(small, 7, seed=1)
    assert small.read_text(encoding="utf-8") == "".join(
        a.read_text(encoding="utf-8").splitlines(True)[:7]
    )
