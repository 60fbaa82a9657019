"""Training with checkpoints that resume, validation BLEU, early stopping and logs.

Layout inside the directories given to :func:`train`:

    checkpoints/last.keras   weights and optimizer state after the last finished epoch
    checkpoints/state.json   epoch count, best score, early-stopping counter, elapsed time
    model.keras              the model with the best validation BLEU
    logs/metrics.csv         one row per epoch
    logs/tensorboard/        TensorBoard events
    logs/learning_curve.png  loss and validation BLEU by epoch
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from translator.config import Config
from translator.corpus import Pair
from translator.data import BucketedDataset
from translator.evaluation import bleu
from translator.io import atomic_path, atomic_write_json, atomic_write_text, read_json
from translator.model import build_model, compile_model
from translator.plots import plot_learning_curves
from translator.tokenizers import Tokenizer
from translator.translate import Translator

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
    "epoch_seconds",
    "elapsed_seconds",
    "train_tokens_per_s",
]


@dataclass
class TrainPaths:
    """Where training writes."""

    checkpoints: Path
    best_model: Path
    logs: Path

    @classmethod
    def in_run_dir(cls, run_dir: str | Path) -> TrainPaths:
        run_dir = Path(run_dir)
        return cls(run_dir / "checkpoints", run_dir / "model.keras", run_dir / "logs")

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.keras"

    @property
    def state(self) -> Path:
        return self.checkpoints / "state.json"


@dataclass
class TrainResult:
    epochs: int
    best_epoch: int
    best_bleu: float
    elapsed_seconds: float
    stop_reason: str
    train_tokens_per_s: float


def save_model(model: keras.Model, path: Path) -> None:
    """Save a `.keras` file atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class _Monitor(keras.callbacks.Callback):
    """Per-epoch validation BLEU, best model, checkpoint, early stopping, time budget, logs."""

    def __init__(
        self,
        cfg: Config,
        paths: TrainPaths,
        state: dict,
        translator: Translator,
        valid: list[Pair],
        data,
    ):
        super().__init__()
        self.cfg, self.paths, self.state = cfg, paths, state
        self.translator, self.valid, self.data = translator, valid, data
        self.steps_per_epoch = 0
        self.t_start = 0.0
        self.t_epoch = 0.0
        self.steps_this_epoch = 0
        self.writer = None

    def _elapsed(self) -> float:
        return self.state["elapsed_seconds"] + (time.time() - self.t_start)

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self.t_start = time.time()
        self.writer = tf.summary.create_file_writer(str(self.paths.logs / "tensorboard"))

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch = time.time()
        self.steps_this_epoch = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_this_epoch += 1
        budget = self.cfg.train.max_minutes
        if budget is not None and self._elapsed() > budget * 60:
            self.state["stop_reason"] = f"time budget of {budget} minutes reached"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        epoch_seconds = time.time() - self.t_epoch
        tokens = (
            self.data.target_tokens * self.steps_this_epoch / max(1, self.data.steps_per_pass())
        )
        hyps = self.translator.translate([p.src for p in self.valid], beam_size=1, n_best=1)
        val_bleu = bleu(hyps, [p.tgt for p in self.valid])
        logs["val_bleu"] = val_bleu
        elapsed = self._elapsed()
        row = {
            "epoch": epoch + 1,
            "steps": self.steps_this_epoch,
            **{k: logs.get(k) for k in METRIC_COLUMNS[2:9]},
            "epoch_seconds": round(epoch_seconds, 2),
            "elapsed_seconds": round(elapsed, 2),
            "train_tokens_per_s": round(tokens / max(epoch_seconds, 1e-9), 1),
        }
        self.state["history"].append(row)
        with self.writer.as_default():
            import tensorflow as tf

            for k, v in row.items():
                if k != "epoch" and v is not None:
                    tf.summary.scalar(k, float(v), step=epoch + 1)
            self.writer.flush()
        improved = val_bleu > self.state["best_bleu"]
        if improved:
            self.state.update(best_bleu=val_bleu, best_epoch=epoch + 1, bad_epochs=0)
            save_model(self.model, self.paths.best_model)
        else:
            self.state["bad_epochs"] += 1
            if self.state["bad_epochs"] >= self.cfg.train.patience:
                self.state["stop_reason"] = (
                    f"early stopping: no validation BLEU gain for {self.cfg.train.patience} epochs"
                )
                self.model.stop_training = True
        self.state["epoch"] = epoch + 1
        self.state["elapsed_seconds"] = elapsed
        self.t_start = time.time()
        # Checkpoint first, then the state that points at it: a kill between the two resumes one
        # epoch back at worst, never from a state without its weights.
        save_model(self.model, self.paths.last)
        atomic_write_json(self.paths.state, self.state)
        write_metrics(self.paths.logs, self.state["history"])
        print(
            f"epoch {epoch + 1}: val_bleu {val_bleu:.2f} (best {self.state['best_bleu']:.2f} at epoch "
            f"{self.state['best_epoch']}), {row['train_tokens_per_s']:.0f} target tokens/s, "
            f"elapsed {elapsed / 60:.1f} min",
            flush=True,
        )


def write_metrics(log_dir: Path, history: list[dict]) -> None:
    """Write metrics.csv and the learning-curve PNG."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
    w.writeheader()
    for row in history:
        w.writerow(row)
    atomic_write_text(log_dir / "metrics.csv", buf.getvalue())
    plot_learning_curves({"": history}, log_dir / "learning_curve.png")


def _new_state(fingerprint: str) -> dict:
    return {
        "fingerprint": fingerprint,
        "epoch": 0,
        "best_bleu": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "elapsed_seconds": 0.0,
        "stop_reason": None,
        "history": [],
    }


def train(
    cfg: Config,
    paths: TrainPaths,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    train_pairs: list[Pair],
    valid_pairs: list[Pair],
    fingerprint: str,
    verbose: int = 1,
) -> TrainResult:
    """Train (or resume training) a model and keep the best one by validation BLEU.

    If `paths.state` exists with the same `fingerprint` (same data, tokenizers and config), training
    continues from `paths.last`, with its optimizer state, at the next epoch.
    """
    keras.utils.set_random_seed(cfg.train.seed)
    tc = cfg.train
    src_ids = src_tok.encode_batch([p.src for p in train_pairs])
    tgt_ids = tgt_tok.encode_batch([p.tgt for p in train_pairs])
    data = BucketedDataset(
        src_ids, tgt_ids, tc.batch_tokens, tc.max_batch_size, True, tc.seed, tc.shuffle_buffer
    )
    valid_data = BucketedDataset(
        src_tok.encode_batch([p.src for p in valid_pairs]),
        tgt_tok.encode_batch([p.tgt for p in valid_pairs]),
        tc.batch_tokens,
        tc.max_batch_size,
        shuffle=False,
    )
    bleu_pairs = valid_pairs[: tc.valid_bleu_pairs] if tc.valid_bleu_pairs else valid_pairs

    state = None
    if paths.state.is_file() and paths.last.is_file():
        saved = read_json(paths.state)
        if saved.get("fingerprint") == fingerprint:
            state = saved
    if state is not None:
        model = keras.saving.load_model(paths.last, compile=True)
        print(f"resuming from {paths.last} after epoch {state['epoch']}", flush=True)
    else:
        state = _new_state(fingerprint)
        model = build_model(_model_dict(cfg), src_tok.vocab_size, tgt_tok.vocab_size, tc.seed)
        compile_model(model, tc.learning_rate, tc.clip_norm, tc.label_smoothing)
    # Stop conditions are judged with the current config, so a finished run can be extended
    # (more epochs, a larger time budget, more patience) and continues from its checkpoint.
    finished = _finished(cfg, state)
    if finished and state["epoch"] > 0 and paths.best_model.is_file():
        state["stop_reason"] = finished
        atomic_write_json(paths.state, state)
        return _result(state)
    state["stop_reason"] = None

    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    translator = Translator(model, src_tok, tgt_tok, cfg.decode)
    steps = tc.steps_per_epoch or data.steps_per_pass()
    monitor = _Monitor(cfg, paths, state, translator, bleu_pairs, data)
    if state["epoch"] < tc.epochs:
        # The shuffle seed moves on with the epoch count, so a resumed run continues with new
        # orders instead of replaying the batches the first run started with.
        data.seed = tc.seed + state["epoch"]
        model.fit(
            data.dataset(repeat=True),
            epochs=tc.epochs,
            initial_epoch=state["epoch"],
            steps_per_epoch=steps,
            validation_data=valid_data.dataset(),
            validation_steps=valid_data.steps_per_pass(),
            shuffle=False,
            callbacks=[monitor],
            verbose=verbose,
        )
    if not state["stop_reason"]:
        state["stop_reason"] = f"reached train.epochs={tc.epochs}"
    atomic_write_json(paths.state, state)
    if not paths.best_model.is_file():
        save_model(model, paths.best_model)
    return _result(state)


def _finished(cfg: Config, state: dict) -> str | None:
    tc = cfg.train
    if state["epoch"] >= tc.epochs:
        return f"reached train.epochs={tc.epochs}"
    if tc.max_minutes is not None and state["elapsed_seconds"] >= tc.max_minutes * 60:
        return f"time budget of {tc.max_minutes} minutes reached"
    if state["bad_epochs"] >= tc.patience:
        return f"early stopping: no validation BLEU gain for {tc.patience} epochs"
    return None


def _model_dict(cfg: Config) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg.model)


def _result(state: dict) -> TrainResult:
    # Tokens over seconds of all epochs, so a short epoch (cut by the time budget) weighs little.
    rows = [r for r in state["history"] if r.get("train_tokens_per_s") and r.get("epoch_seconds")]
    seconds = sum(r["epoch_seconds"] for r in rows)
    tokens = sum(r["train_tokens_per_s"] * r["epoch_seconds"] for r in rows)
    return TrainResult(
        epochs=state["epoch"],
        best_epoch=state["best_epoch"],
        best_bleu=state["best_bleu"],
        elapsed_seconds=state["elapsed_seconds"],
        stop_reason=state["stop_reason"] or "",
        train_tokens_per_s=tokens / seconds if seconds else 0.0,
    )
