"""Plots of a model's behaviour: attention heatmaps (alignments) and learning curves.

No TensorFlow import here, so `translator plot` starts fast."""

from __future__ import annotations

import math
from pathlib import Path

from translator.io import atomic_path


def plot_attention(alignment, path: str | Path, title: str | None = None) -> Path:
    """Draw an attention heatmap and write it atomically.

    Source tokens run along the x axis, target tokens (EOS included) down the y axis; cell
    `(t, s)` is the weight target step `t` gives source token `s`.

    Args:
        alignment: a `translator.translate.Alignment` (from
            `Translator.translate(text, return_attention=True)`), or a mapping with its fields.
        path: output file; the format follows its suffix (`.png`, `.pdf`, `.svg`, ...).
        title: figure title (default: the translation).

    Returns:
        The path written.

    Example:
        >>> plot_attention(translator.translate("Guten Morgen.", return_attention=True), "a.png")
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
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)
    return path


def plot_learning_curves(histories: dict[str, list[dict]], path: Path) -> None:
    """Plot training/validation loss and validation BLEU by epoch for one or more runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
