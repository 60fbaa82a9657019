"""Scoring with sacrebleu: corpus BLEU, chrF and TER, with their signatures."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Score:
    """One corpus-level score."""

    metric: str
    score: float
    signature: str
    text: str

    def to_dict(self) -> dict:
        return asdict(self)


def _metric(name: str):
    import sacrebleu

    if name == "bleu":
        return sacrebleu.metrics.BLEU()
    if name == "chrf":
        return sacrebleu.metrics.CHRF()
    if name == "ter":
        return sacrebleu.metrics.TER()
    raise ValueError(f"unknown metric {name!r}; valid choices: bleu, chrf, ter")


def corpus_scores(hypotheses: list[str], references: list[str], metrics: list[str]) -> dict[str, Score]:
    """Score hypotheses against one reference each.

    Args:
        hypotheses: detokenised system outputs.
        references: one reference per hypothesis.
        metrics: names among `bleu`, `chrf`, `ter`.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    out = {}
    for name in metrics:
        metric = _metric(name)
        result = metric.corpus_score(hypotheses, [references])
        out[name] = Score(name, float(result.score), str(metric.get_signature()), str(result))
    return out


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults)."""
    return corpus_scores(hypotheses, references, ["bleu"])["bleu"].score
