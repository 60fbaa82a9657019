"""Reports of evaluation rows: result files (JSON, CSV, per-row files, plots) and text tables.

`write_results` writes an evaluation into a directory; `format_table`, `format_signatures` and
`format_worst` render it for the terminal.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from translator.evaluation.metrics import METRIC_LABELS, METRICS, sentence_signatures
from translator.evaluation.significance import DEFAULT_BOOTSTRAP, DEFAULT_SEED
from translator.io import atomic_write_json, atomic_write_text
from translator.plots import plot_bleu_by_length

if TYPE_CHECKING:
    from translator.evaluation.evaluator import EvalRow


# -- output files ----------------------------------------------------------------------------------
def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-" else "_" for c in part) or "_"


def _setting_label(row: EvalRow, with_lp: bool) -> str:
    label = f"beam{row.beam_size}"
    return label + (f"-lp{row.length_penalty:g}" if with_lp else "")


def _row_stems(rows: Sequence[EvalRow]) -> list[str]:
    """File stems: the test set name, qualified by model and setting only when these vary."""
    many_models = len({r.model for r in rows}) > 1
    many_settings = len({(r.beam_size, r.length_penalty) for r in rows}) > 1
    many_lps = len({r.length_penalty for r in rows}) > 1
    stems, used = [], set()
    for r in rows:
        parts = ([r.model] if many_models else []) + [r.test_set]
        if many_settings:
            parts.append(_setting_label(r, many_lps))
        stem = ".".join(_safe(p) for p in parts)
        base, k = stem, 2
        while stem in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem)
        stems.append(stem)
    return stems


def _plot_groups(rows: Sequence[EvalRow]) -> dict[str, list[EvalRow]]:
    """Rows by plot file stem: the test set name, qualified by the setting when settings vary."""
    many_settings = len({(r.beam_size, r.length_penalty) for r in rows}) > 1
    many_lps = len({r.length_penalty for r in rows}) > 1
    groups: dict[str, list[EvalRow]] = {}
    for r in rows:
        parts = [r.test_set] + ([_setting_label(r, many_lps)] if many_settings else [])
        groups.setdefault(".".join(_safe(p) for p in parts), []).append(r)
    return groups


CSV_FIELDS = [
    "model",
    "run_dir",
    "test_set",
    "test_data",
    "sentences",
    "beam_size",
    "length_penalty",
    "batch_size",
]


def _csv_fields(metrics: Sequence[str]) -> list[str]:
    per_metric = [
        f"{m}{suffix}"
        for m in metrics
        for suffix in ("", "_mean", "_ci", "_p_value", "_signature", "_bootstrap_signature")
    ]
    tail = [
        "length_ratio",
        "sys_len",
        "ref_len",
        "seconds",
        "sentences_per_s",
        "cached",
        "baseline",
        "note",
    ]
    return CSV_FIELDS + per_metric + tail + ["hypotheses_file", "sentences_file"]


def _csv_row(row: EvalRow, metrics: Sequence[str]) -> dict:
    out = {
        "model": row.model,
        "run_dir": row.run_dir or "",
        "test_set": row.test_set,
        "test_data": row.test_data,
        "sentences": row.sentences,
        "beam_size": row.beam_size,
        "length_penalty": row.length_penalty,
        "batch_size": row.decode["batch_size"],
        "length_ratio": row.length_ratio,
        "sys_len": row.sys_len,
        "ref_len": row.ref_len,
        "seconds": row.seconds,
        "sentences_per_s": row.sentences_per_s,
        "cached": row.cached,
        "baseline": row.baseline or "",
        "note": row.note,
        "hypotheses_file": row.files.get("hypotheses", ""),
        "sentences_file": row.files.get("sentences", ""),
    }
    for m in metrics:
        sig = row.significance.get(m, {})
        p = sig.get("p_value")
        out[m] = row.scores[m]["score"]
        out[f"{m}_signature"] = row.scores[m]["signature"]
        out[f"{m}_mean"] = sig.get("mean", "")
        out[f"{m}_ci"] = sig.get("ci", "")
        out[f"{m}_p_value"] = "" if p is None else p
        out[f"{m}_bootstrap_signature"] = sig.get("signature", "")
    return out


def _cell(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ")


# The files `write_results` writes: per row (by kind), per plot group, and for the whole run.
ROW_FILES = {"hypotheses": ".hyp.txt", "scores": ".scores.json", "sentences": ".sentences.tsv"}
PLOT_SUFFIX = ".bleu-by-length.png"
RESULT_FILES = ("results.json", "results.csv")
OUTPUT_SUFFIXES = (*ROW_FILES.values(), PLOT_SUFFIX)


def write_results(
    rows: list[EvalRow],
    output_dir: str | Path,
    metrics: Sequence[str] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int | None = DEFAULT_SEED,
) -> dict[str, Path]:
    """Write the evaluation into `output_dir` (atomically, file by file).

    Files: `results.json` and `results.csv` (all rows, with every score's sacrebleu signature);
    per row `<stem>.hyp.txt`, `<stem>.scores.json` and `<stem>.sentences.tsv` (source, reference,
    hypothesis, sentence BLEU, sentence chrF), where the stem is the test set name, prefixed by
    the model when there are several and suffixed by the decoding setting when there are several;
    per test set and decoding setting `<test>[.<setting>].bleu-by-length.png`. Sets each row's
    `files` to the paths of its files.

    Returns:
        `{"json": results.json path, "csv": results.csv path}`.
    """
    out = Path(output_dir)
    metrics = list(metrics) if metrics else [m for m in METRICS if rows and m in rows[0].scores]
    for row, stem in zip(rows, _row_stems(rows), strict=True):
        row.files = {kind: str(out / f"{stem}{suffix}") for kind, suffix in ROW_FILES.items()}
    groups = _plot_groups(rows)
    for stem, group in groups.items():
        for row in group:
            row.files["length_plot"] = str(out / f"{stem}{PLOT_SUFFIX}")
    for row in rows:
        atomic_write_text(row.files["hypotheses"], "".join(_cell(h) + "\n" for h in row.hypotheses))
        atomic_write_json(row.files["scores"], row.to_dict())
        lines = ["source\treference\thypothesis\tsentence_bleu\tsentence_chrf\n"]
        for p, h, s in zip(row.pairs, row.hypotheses, row.sentence_scores, strict=True):
            lines.append(
                f"{_cell(p.src)}\t{_cell(p.tgt)}\t{_cell(h)}\t{s['bleu']:.4f}\t{s['chrf']:.4f}\n"
            )
        atomic_write_text(row.files["sentences"], "".join(lines))
    for stem, group in groups.items():
        title = f"BLEU by source length: {group[0].test_set}, {group[0].setting}"
        plot_bleu_by_length(group, out / f"{stem}{PLOT_SUFFIX}", title=title)
    results = {
        "metrics": metrics,
        "bootstrap": bootstrap if len({r.model for r in rows}) > 1 else 0,
        "seed": seed,
        "sentence_signatures": sentence_signatures(),
        "rows": [r.to_dict() for r in rows],
    }
    json_path, csv_path = (out / name for name in RESULT_FILES)
    atomic_write_json(json_path, results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_csv_fields(metrics), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(_csv_row(row, metrics))
    atomic_write_text(csv_path, buf.getvalue())
    return {"json": json_path, "csv": csv_path}


# -- text output -----------------------------------------------------------------------------------
def _metric_cell(row: EvalRow, metric: str) -> str:
    text = f"{row.score(metric):.2f}"
    sig = row.significance.get(metric)
    if sig:
        text += f" ({sig['mean']:.2f} ± {sig['ci']:.2f})"
        if sig["p_value"] is not None:
            text += f" p={sig['p_value']:.4f}" + ("*" if sig["p_value"] < 0.05 else "")
    return text


def _row_note(row: EvalRow) -> str:
    notes = []
    if row.significance and row.baseline == row.model:
        notes.append("baseline")
    if row.cached:
        notes.append("cached")
    if row.note:
        notes.append(row.note)
    return ", ".join(notes)


def format_table(rows: Sequence[EvalRow]) -> str:
    """A plain-text table: one line per row, columns separated by at least two spaces.

    Columns: model, test, decoding, one per metric (with mean ± 95% CI and p-value when the rows
    have significance), length ratio, sentences/s, note; then a line explaining the test.
    """
    if not rows:
        return "(no results)"
    metrics = [m for m in METRICS if m in rows[0].scores]
    with_ci = any(r.significance for r in rows)
    header = ["model", "test", "decoding"]
    header += [METRIC_LABELS[m] + (" (mean ± 95% CI)" if with_ci else "") for m in metrics]
    header += ["ratio", "sent/s", "note"]
    body = [
        [r.model, r.test_set, r.setting]
        + [_metric_cell(r, m) for m in metrics]
        + [f"{r.length_ratio:.3f}", f"{r.sentences_per_s:.1f}", _row_note(r)]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in body]
    if with_ci:
        sig = next(r.significance for r in rows if r.significance)
        first = next(iter(sig.values()))
        lines.append(
            f"mean ± 95% CI and p-values: sacrebleu paired bootstrap resampling ({first['n_samples']} resamples, "
            f"seed {first['seed']}) of each model against the first ({rows[0].model}) on the same test set "
            "and decoding; * p < 0.05"
        )
    return "\n".join(lines)


def format_signatures(rows: Sequence[EvalRow]) -> str:
    """The distinct sacrebleu signatures of the scores (and of the paired tests) in `rows`."""
    seen: dict[str, None] = {}
    for r in rows:
        for m, s in r.scores.items():
            seen[f"{METRIC_LABELS.get(m, m)}: {s['signature']}"] = None
        for m, s in r.significance.items():
            seen[f"{METRIC_LABELS.get(m, m)} (paired bootstrap): {s['signature']}"] = None
    return "\n".join(["signatures:"] + [f"  {line}" for line in seen])


def worst_sentences(row: EvalRow, k: int) -> list[int]:
    """Indices of the `k` worst sentences of a row, by sentence BLEU, then sentence chrF."""
    order = sorted(
        range(len(row.sentence_scores)),
        key=lambda i: (row.sentence_scores[i]["bleu"], row.sentence_scores[i]["chrf"], i),
    )
    return order[: max(k, 0)]


def format_worst(rows: Sequence[EvalRow], k: int) -> str:
    """Per row, its `k` worst sentences (`worst_sentences`) with scores, source, reference and
    hypothesis; blocks separated by blank lines."""
    blocks = []
    for r in rows:
        idx = worst_sentences(r, k)
        lines = [
            f"worst {len(idx)} of {r.model} | {r.test_set} | {r.setting} (by sentence BLEU, then chrF):"
        ]
        for i in idx:
            s = r.sentence_scores[i]
            lines.append(f"  #{i + 1}  BLEU {s['bleu']:.2f}  chrF {s['chrf']:.2f}")
            lines.append(f"      src: {r.pairs[i].src}")
            lines.append(f"      ref: {r.pairs[i].tgt}")
            lines.append(f"      hyp: {r.hypotheses[i]}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
