"""Evaluation: metrics, test sets, significance, the hypothesis cache and reports.

- `metrics.py`: the metric registry (`METRICS`), corpus, sentence and length-bucket scores;
- `testsets.py`: `TestSet`, test set specs and readers, a run's own test split;
- `significance.py`: sacrebleu's paired bootstrap resampling against the first model;
- `cache.py`: hypotheses already translated, in `RUN_DIR/eval/cache/`;
- `evaluator.py`: `evaluate` (runs x test sets x decoding settings) and its rows, `EvalRow`;
- `report.py`: result files (`write_results`) and text tables;
- the plots are in `translator/plots.py`.

Names are loaded on first use, so importing `translator.evaluation.metrics` (the config does)
imports neither TensorFlow nor sacrebleu.

Example:
    >>> from translator.evaluation import evaluate, format_table
    >>> rows = evaluate(["runs/a", "runs/b"], {"news": "news.tsv"}, beam_sizes=(1, 5))
    >>> print(format_table(rows))
"""

from __future__ import annotations

_MODULES = {
    "translator.evaluation.metrics": (
        "METRICS",
        "METRIC_LABELS",
        "LENGTH_BUCKETS",
        "Score",
        "bleu",
        "corpus_scores",
        "length_buckets",
        "sentence_scores",
        "sentence_signatures",
    ),
    "translator.evaluation.testsets": (
        "TestSet",
        "load_test_set",
        "load_test_sets",
        "parse_test_spec",
    ),
    "translator.evaluation.significance": (
        "DEFAULT_BOOTSTRAP",
        "DEFAULT_SEED",
        "paired_bootstrap",
    ),
    "translator.evaluation.evaluator": ("EvalRow", "evaluate"),
    "translator.evaluation.report": (
        "format_signatures",
        "format_table",
        "format_worst",
        "worst_sentences",
        "write_results",
    ),
    "translator.plots": ("plot_bleu_by_length", "plot_runs", "read_metrics_log"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # sacrebleu, matplotlib and (through the translator) TensorFlow load only when used.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'translator.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
