"""What training keeps across restarts: epoch, best score, patience, elapsed time and the history.

It lives in `checkpoints/state.json`, written after the checkpoint it describes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from translator.io import ArtifactError, atomic_write_json, read_json

METRIC_COLUMNS = [
    "epoch",
    "steps",
    "loss",
    "accuracy",
    "perplexity",
    "val_loss",
    "val_accuracy",
    "val_perplexity",
    "val_bleu",
    "val_length_ratio",
    "val_bleu_avg",  # the average of the last checkpoints (train.average_checkpoints), else empty
    "epoch_seconds",
    "elapsed_seconds",
    "train_tokens_per_s",
    "learning_rate",
]


@dataclass
class TrainState:
    """The training run's progress (see the module docstring).

    fingerprint: what must match for a checkpoint to be resumed (model, data, tokenizers, train
        settings other than when to stop).
    history: one row per finished epoch, keyed by `METRIC_COLUMNS`.
    """

    fingerprint: str
    epoch: int = 0
    best_bleu: float = -1.0
    best_epoch: int = 0
    # With train.average_checkpoints: how many epochs (up to `best_epoch`) the best model averages;
    # 0: the best model is one epoch's.
    best_averaged: int = 0
    bad_epochs: int = 0
    elapsed_seconds: float = 0.0
    stop_reason: str | None = None
    history: list[dict] = field(default_factory=list)
    # The optimizer's step count in the checkpoint this state describes (None in states written
    # before it was recorded): pairs a state with its checkpoint after a crash between writes.
    optimizer_steps: int | None = None
    # The learning-rate schedule's counters (translator/training/schedule.py).
    lr_scale: float = 1.0
    lr_best: float | None = None
    lr_bad_epochs: int = 0

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> TrainState | None:
        """The saved state if it exists and has this fingerprint, else None."""
        if not path.is_file():
            return None
        saved = read_json(path)  # ArtifactError naming the file when it is corrupt
        if not isinstance(saved, dict):
            raise ArtifactError(f"{path} is not a training state (not a JSON object)")
        if saved.get("fingerprint") != fingerprint:
            return None
        try:
            return cls(**{k: saved[k] for k in cls.__dataclass_fields__ if k in saved})
        except TypeError as e:
            raise ArtifactError(f"{path} is not a training state ({e})") from None

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @property
    def train_tokens_per_s(self) -> float:
        """Tokens over seconds of all epochs, so a short epoch (cut by the time budget) weighs
        little."""
        rows = [r for r in self.history if r.get("train_tokens_per_s") and r.get("epoch_seconds")]
        seconds = sum(r["epoch_seconds"] for r in rows)
        tokens = sum(r["train_tokens_per_s"] * r["epoch_seconds"] for r in rows)
        return tokens / seconds if seconds else 0.0
