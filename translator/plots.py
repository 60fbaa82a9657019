"""Plots of a model's behaviour: attention heatmaps (alignments)."""

from __future__ import annotations

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
