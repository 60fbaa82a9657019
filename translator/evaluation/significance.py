"""Significance: sacrebleu's paired bootstrap resampling of each model against the first.

`paired_bootstrap` runs the test that `sacrebleu --paired-bs` runs; `add_significance` applies it to
evaluation rows, per test set and decoding setting. sacrebleu is imported only when a test runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from translator.evaluation.metrics import METRICS, metric

if TYPE_CHECKING:
    from translator.evaluation.evaluator import EvalRow

DEFAULT_BOOTSTRAP = 1000
# sacrebleu draws all resamples at once: [resamples, sentences] indices (10,000 x 3,000 sentences is
# 240 MB; a billion asked for 149 GB).
MAX_BOOTSTRAP = 10_000
DEFAULT_SEED = 12345


@contextlib.contextmanager
def _sacrebleu_seed(seed: int | None) -> Iterator[None]:
    """sacrebleu's resampling reads its seed from SACREBLEU_SEED (`none` = unseeded)."""
    old = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = "none" if seed is None else str(seed)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SACREBLEU_SEED", None)
        else:
            os.environ["SACREBLEU_SEED"] = old


def check_seed(seed: int | None) -> None:
    """A resampling seed is a positive integer or None (unseeded); else `ValueError`."""
    if seed is not None and (not isinstance(seed, int) or seed < 1):
        raise ValueError(
            f"seed must be a positive integer (sacrebleu treats 0 as unseeded), got {seed!r}"
        )


def paired_bootstrap(
    systems: Sequence[tuple[str, Sequence[str]]],
    references: Sequence[str],
    metrics: Sequence[str] = METRICS,
    n_samples: int = DEFAULT_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> dict[str, list[dict]]:
    """sacrebleu's paired bootstrap resampling (`sacrebleu --paired-bs`) of each system against the first.

    Args:
        systems: (name, hypotheses) pairs; the first is the baseline.
        references: one reference per sentence.
        metrics: names among `METRICS`.
        n_samples: bootstrap resamples.
        seed: RNG seed (None: unseeded).

    Returns:
        For each metric, one dict per system: `score`, `mean` and `ci` (the 95% confidence
        interval around the mean of the resampled scores), `p_value` (None for the baseline),
        `signature` (with the resampling count and seed), `n_samples`, `seed`.
    """
    from sacrebleu.significance import PairedTest

    if len(systems) < 2:
        raise ValueError("paired bootstrap resampling needs at least two systems")
    if n_samples < 1:
        raise ValueError(f"bootstrap resamples must be at least 1, got {n_samples}")
    check_seed(seed)
    metrics = list(metrics)
    named = [(str(name), list(hyps)) for name, hyps in systems]
    for name, hyps in named:
        if len(hyps) != len(references):
            raise ValueError(f"{name}: {len(hyps)} hypotheses but {len(references)} references")
    with _sacrebleu_seed(seed):
        test = PairedTest(
            named,
            {m: metric(m) for m in metrics},
            [list(references)],
            test_type="bs",
            n_samples=n_samples,
        )
        signatures, results = test()
    out = {}
    # PairedTest keys its results by sacrebleu's score names (BLEU, chrF2, TER), in the given order.
    for name, key in zip(metrics, list(signatures), strict=True):
        out[name] = [
            {
                "score": float(r.score),
                "mean": float(r.mean),
                "ci": float(r.ci),
                "p_value": None if r.p_value is None else float(r.p_value),
                "signature": str(signatures[key]),
                "n_samples": n_samples,
                "seed": seed,
            }
            for r in results[key]
        ]
    return out


def add_significance(
    rows: Sequence[EvalRow], metrics: Sequence[str], n_samples: int, seed: int | None
) -> None:
    """Set `baseline` and `significance` of the rows, in place.

    Rows are grouped by test set and decoding setting; in each group the first row is the
    baseline and every row on the same test data (equal `test_digest`) is compared with it. A row
    on other data gets a `note` instead. `significance` maps a metric to the `paired_bootstrap`
    result of that row without its `score`.
    """
    groups: dict[tuple, list[EvalRow]] = {}
    for row in rows:
        groups.setdefault((row.test_set, row.beam_size, row.length_penalty), []).append(row)
    for group in groups.values():
        if len(group) < 2:
            continue
        base = group[0]
        comparable = [base] + [r for r in group[1:] if r.test_digest == base.test_digest]
        for r in group[1:]:
            if r.test_digest != base.test_digest:
                r.note = f"not compared: test data differs from {base.model}'s"
        if len(comparable) < 2:
            continue
        result = paired_bootstrap(
            [(r.model, r.hypotheses) for r in comparable], base.references, metrics, n_samples, seed
        )
        for i, r in enumerate(comparable):
            r.baseline = base.model
            r.significance = {
                m: {k: v for k, v in result[m][i].items() if k != "score"} for m in metrics
            }
