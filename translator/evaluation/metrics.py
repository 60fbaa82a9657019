"""The metric registry and corpus/sentence scores with sacrebleu.

`METRICS` is the one list of metric names: training's validation BLEU, evaluation and config
validation all read it. sacrebleu is imported only when a score is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from translator.data.corpus import Pair


def _bleu(**options: Any):
    from sacrebleu.metrics import BLEU

    return BLEU(**options)


def _chrf(**options: Any):
    from sacrebleu.metrics import CHRF

    return CHRF(**options)


def _ter(**options: Any):
    from sacrebleu.metrics import TER

    return TER(**options)


# name -> (label shown in tables, sacrebleu metric factory)
REGISTRY: dict[str, tuple[str, Callable[..., Any]]] = {
    "bleu": ("BLEU", _bleu),
    "chrf": ("chrF", _chrf),
    "ter": ("TER", _ter),
}
METRICS = tuple(REGISTRY)
METRIC_LABELS = {name: label for name, (label, _) in REGISTRY.items()}


def metric(name: str, **options: Any):
    """A sacrebleu metric object by name (`bleu`, `chrf`, `ter`)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r}; valid choices: {', '.join(METRICS)}")
    return REGISTRY[name][1](**options)


def check_metrics(metrics: str | Sequence[str]) -> list[str]:
    """Metric names from a list or a comma-separated string: lower-cased, deduplicated, validated."""
    if isinstance(metrics, str):
        metrics = metrics.split(",")
    out: list[str] = []
    for m in metrics:
        m = m.strip().lower()
        if m and m not in out:
            metric(m)  # raises ValueError naming the valid choices
            out.append(m)
    if not out:
        raise ValueError(f"no metrics given; valid choices: {', '.join(METRICS)}")
    return out


@dataclass
class Score:
    """One corpus-level score."""

    metric: str
    score: float
    signature: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_scores(
    hypotheses: Sequence[str], references: Sequence[str], metrics: Sequence[str]
) -> dict[str, Score]:
    """Score hypotheses against one reference each.

    Args:
        hypotheses: detokenised system outputs.
        references: one reference per hypothesis.
        metrics: names among `METRICS`.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    out = {}
    for name in metrics:
        m = metric(name)
        result = m.corpus_score(list(hypotheses), [list(references)])
        out[name] = Score(name, float(result.score), str(m.get_signature()), str(result))
    return out


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults)."""
    return corpus_scores(hypotheses, references, ["bleu"])["bleu"].score


def bleu_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[int, int]:
    """(hypothesis length, reference length) of the corpus, in BLEU's tokens (13a)."""
    result = metric("bleu").corpus_score(list(hypotheses), [list(references)])
    return int(result.sys_len), int(result.ref_len)


# Source-length buckets (words, inclusive; None: no upper bound) for the BLEU-by-length breakdown.
LENGTH_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (0, 5, "1-5"),
    (6, 10, "6-10"),
    (11, 15, "11-15"),
    (16, 20, "16-20"),
    (21, 30, "21-30"),
    (31, None, "31+"),
)


def length_buckets(pairs: Sequence[Pair], hypotheses: Sequence[str]) -> list[dict]:
    """Corpus BLEU of the sentences in each source-length bucket (`LENGTH_BUCKETS`).

    Args:
        pairs: (source, reference) pairs; a source's length is its number of words.
        hypotheses: one hypothesis per pair.

    Returns:
        One dict per bucket, in `LENGTH_BUCKETS` order: `bucket` (its label), `min_words`,
        `max_words` (None: no upper bound), `sentences` (how many fall in it) and `bleu` (None
        for an empty bucket).
    """
    lengths = [len(p.src.split()) for p in pairs]
    out = []
    for lo, hi, label in LENGTH_BUCKETS:
        idx = [i for i, n in enumerate(lengths) if n >= lo and (hi is None or n <= hi)]
        score = bleu([hypotheses[i] for i in idx], [pairs[i].tgt for i in idx]) if idx else None
        out.append(
            {
                "bucket": label,
                "min_words": lo,
                "max_words": hi,
                "sentences": len(idx),
                "bleu": score,
            }
        )
    return out


SENTENCE_METRICS = ("bleu", "chrf")


def _sentence_metrics() -> dict[str, Any]:
    return {"bleu": metric("bleu", effective_order=True), "chrf": metric("chrf")}


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[dict]:
    """Sentence BLEU (effective order) and chrF of every hypothesis."""
    metrics = _sentence_metrics()
    return [
        {name: float(m.sentence_score(h, [r]).score) for name, m in metrics.items()}
        for h, r in zip(hypotheses, references, strict=True)
    ]


def sentence_signatures() -> dict[str, str]:
    """The sacrebleu signatures of the sentence-level scores."""
    out = {}
    for name, m in _sentence_metrics().items():
        m.sentence_score("a", ["a"])
        out[name] = str(m.get_signature())
    return out
