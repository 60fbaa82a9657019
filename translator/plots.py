"""Plots: attention heatmaps (alignments), learning curves and BLEU by source length.

No TensorFlow import here, so `translator plot` starts fast; matplotlib is imported when a plot is
drawn.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from translator.io import atomic_path
from translator.rundir import RunDir

if TYPE_CHECKING:
    from translator.evaluation.evaluator import EvalRow


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_format(path: str | Path, what: str = "the output") -> str:
    """The image format a figure written to `path` gets: its suffix (`.png`, `.pdf`, `.svg`,
    ...; PNG without one).

    Raises:
        ValueError: naming `what` (e.g. the option) and the formats there are, for a suffix that
            matplotlib cannot write (checked before the work that makes the figure).
    """
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lstrip(".").lower()
    if not suffix:
        return "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix not in formats:
        raise ValueError(
            f"{what} {path}: cannot write a figure as .{suffix}; use one of "
            + ", ".join(f".{f}" for f in sorted(formats))
        )
    return suffix


def _write(fig, path: str | Path, dpi: int) -> None:
    """Lay out a figure and write it (atomically) in the format of the path's suffix."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=figure_format(path), dpi=dpi)


def _save(plt, fig, path: str | Path) -> None:
    """:func:`_write` a pyplot figure at 100 dpi and close it."""
    _write(fig, path, dpi=100)
    plt.close(fig)


def plot_attention(alignment, path: str | Path, title: str | None = None) -> Path:
    """Draw an attention heatmap and write it atomically.

    Source tokens run along the x axis, target tokens (EOS included) down the y axis; cell
    `(t, s)` is the weight target step `t` gives source token `s`.

    Args:
        alignment: a `translator.translate.Alignment` (from `Translator.align(text)`), or a
            mapping with its fields.
        path: output file; the format follows its suffix (`.png`, `.pdf`, `.svg`, ...).
        title: figure title (default: the translation).

    Returns:
        The path written.

    Example:
        >>> plot_attention(translator.align("Guten Morgen."), "a.png")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    get = alignment.get if isinstance(alignment, dict) else lambda k: getattr(alignment, k)
    source, target = list(get("source_tokens")), list(get("target_tokens"))
    weights = get("attention")
    if weights.shape != (len(target), len(source)):
        raise ValueError(
            f"attention has shape {tuple(weights.shape)}, expected "
            f"[{len(target)} target tokens, {len(source)} source tokens]"
        )
    if not source:
        raise ValueError("nothing to plot: the source sentence is empty")

    cell = 0.32  # inches per token
    fig = Figure(figsize=(max(3.0, 1.5 + cell * len(source)), max(2.5, 1.2 + cell * len(target))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=90)
    ax.set_yticks(range(len(target)), target)
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(title if title is not None else get("translation"), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    path = Path(path)
    _write(fig, path, dpi=120)
    return path


def plot_learning_curves(histories: dict[str, list[dict]], path: Path) -> None:
    """Plot training/validation loss and validation BLEU by epoch for one or more runs.

    Args:
        histories: run name -> its `logs/metrics.csv` rows (`epoch`, `loss`, and `val_loss`,
            `val_bleu` when logged); the name "" (one run) gets no prefix in the legend.
        path: the image to write (atomically; its format follows the suffix, see
            :func:`figure_format`).
    """
    plt = _pyplot()
    fig, (ax_loss, ax_bleu) = plt.subplots(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        epochs = [int(r["epoch"]) for r in history]
        prefix = f"{name} " if name else ""

        def col(key, history=history):
            return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in history]

        ax_loss.plot(epochs, col("loss"), marker="o", label=f"{prefix}train")
        ax_loss.plot(epochs, col("val_loss"), marker="o", linestyle="--", label=f"{prefix}valid")
        ax_bleu.plot(epochs, col("val_bleu"), marker="o", label=name or "valid BLEU")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_bleu.set_xlabel("epoch")
    ax_bleu.set_ylabel("validation BLEU")
    ax_bleu.legend()
    _save(plt, fig, path)


def read_metrics_log(run_dir: str | Path | RunDir) -> list[dict]:
    """The rows of `RUN_DIR/logs/metrics.csv` (one per epoch; values as strings, by column)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    path = run.metrics_log
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run.path} has no training log; run the `train` stage first"
        )
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV training log ({e})") from None
    for col in ("epoch", "loss"):
        if col not in fields:
            raise ValueError(f"{path}: not a training log (no {col!r} column)")
    if not rows:
        raise ValueError(f"{path}: no epochs logged yet")
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        for key in ("epoch", "loss", "val_loss", "val_bleu"):
            value = row.get(key)
            try:
                if value not in (None, ""):
                    (int if key == "epoch" else float)(value)
            except ValueError:
                raise ValueError(
                    f"{path}:{line}: {key} is {value!r}, not a number; the log is damaged (the "
                    "train stage writes it again from its checkpoints' state when it resumes)"
                ) from None
    return rows


def plot_runs(run_dirs: Iterable[str | Path | RunDir], path: str | Path) -> Path:
    """Learning curves (loss and validation BLEU by epoch) of several runs on one chart.

    Runs are named by their directory name (made unique); returns the path written (its format
    follows the suffix: PNG, PDF, SVG, ...).
    """
    histories: dict[str, list[dict]] = {}
    for run_dir in run_dirs:
        name = base = (run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)).name
        k = 2
        while name in histories:
            name, k = f"{base}-{k}", k + 1
        histories[name] = read_metrics_log(run_dir)
    if not histories:
        raise ValueError("no run directories given")
    plot_learning_curves(histories, Path(path))
    return Path(path)


def plot_bleu_by_length(
    rows: Sequence[EvalRow], path: str | Path, title: str | None = None
) -> None:
    """Grouped bars: corpus BLEU per source-length bucket, one colour per row (model).

    Args:
        rows: evaluation rows of one test set (`EvalRow.length_buckets`, from
            `metrics.length_buckets`); buckets without sentences are left out.
        path: the PNG to write (atomically).
        title: figure title.
    """
    plt = _pyplot()
    buckets = rows[0].length_buckets
    keep = [i for i in range(len(buckets)) if any(r.length_buckets[i]["sentences"] for r in rows)]
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(keep) + 2), 4))
    for j, row in enumerate(rows):
        xs = [k + (j - (len(rows) - 1) / 2) * width for k in range(len(keep))]
        ys = [row.length_buckets[i]["bleu"] or 0.0 for i in keep]
        ax.bar(xs, ys, width, label=row.model)
    ax.set_xticks(range(len(keep)))
    ax.set_xticklabels([f"{buckets[i]['bucket']}\n(n={buckets[i]['sentences']})" for i in keep])
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    if title:
        ax.set_title(title)
    ax.legend()
    _save(plt, fig, path)
