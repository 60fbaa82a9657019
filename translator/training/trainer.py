"""Training: build or resume the model, fit with the callbacks, keep the best by validation BLEU.

Where it writes (see :class:`~translator.rundir.RunDir`): `checkpoints/last.keras` and
`checkpoints/state.json` after each epoch, `model.keras` (the best model), `logs/metrics.csv`,
`logs/learning_curve.png` and `logs/tensorboard/`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import keras

from translator.config import Config
from translator.data.batching import BucketedDataset
from translator.data.corpus import Pair
from translator.data.tokenizers import Tokenizer
from translator.models import build_model, compile_model
from translator.rundir import RunDir
from translator.training.callbacks import (
    BestModel,
    Checkpoint,
    Throughput,
    TimeBudget,
    ValidationBLEU,
    save_model,
)
from translator.training.state import TrainState
from translator.translate import Translator


@dataclass
class TrainResult:
    """How a training run ended."""

    epochs: int
    best_epoch: int
    best_bleu: float
    elapsed_seconds: float
    stop_reason: str
    train_tokens_per_s: float

    @classmethod
    def from_state(cls, state: TrainState) -> TrainResult:
        return cls(
            epochs=state.epoch,
            best_epoch=state.best_epoch,
            best_bleu=state.best_bleu,
            elapsed_seconds=state.elapsed_seconds,
            stop_reason=state.stop_reason or "",
            train_tokens_per_s=state.train_tokens_per_s,
        )


def _finished(cfg: Config, state: TrainState) -> str | None:
    """Why a run is finished under the current config, or None. Stop conditions are judged with
    the current config, so a finished run can be extended (more epochs, a larger time budget, more
    patience) and continues from its checkpoint."""
    tc = cfg.train
    if state.epoch >= tc.epochs:
        return f"reached train.epochs={tc.epochs}"
    if tc.max_minutes is not None and state.elapsed_seconds >= tc.max_minutes * 60:
        return f"time budget of {tc.max_minutes} minutes reached"
    if state.bad_epochs >= tc.patience:
        return f"early stopping: no validation BLEU gain for {tc.patience} epochs"
    return None


def train(
    cfg: Config,
    run: RunDir,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    train_pairs: list[Pair],
    valid_pairs: list[Pair],
    fingerprint: str,
    verbose: int = 1,
) -> TrainResult:
    """Train (or resume training) a model and keep the best one by validation BLEU.

    If `run.train_state` exists with the same `fingerprint` (same data, tokenizers and config),
    training continues from `run.last_checkpoint`, with its optimizer state, at the next epoch.
    """
    keras.utils.set_random_seed(cfg.train.seed)
    tc = cfg.train
    data = BucketedDataset(
        src_tok.encode_batch([p.src for p in train_pairs]),
        tgt_tok.encode_batch([p.tgt for p in train_pairs]),
        tc.batch_tokens,
        tc.max_batch_size,
        True,
        tc.seed,
        tc.shuffle_buffer,
    )
    valid_data = BucketedDataset(
        src_tok.encode_batch([p.src for p in valid_pairs]),
        tgt_tok.encode_batch([p.tgt for p in valid_pairs]),
        tc.batch_tokens,
        tc.max_batch_size,
        shuffle=False,
    )
    bleu_pairs = valid_pairs[: tc.valid_bleu_pairs] if tc.valid_bleu_pairs else valid_pairs

    state = TrainState.load(run.train_state, fingerprint) if run.last_checkpoint.is_file() else None
    if state is not None:
        model = keras.saving.load_model(run.last_checkpoint, compile=True, safe_mode=True)
        print(f"resuming from {run.last_checkpoint} after epoch {state.epoch}", flush=True)
    else:
        state = TrainState(fingerprint)
        model = build_model(cfg.model, src_tok.vocab_size, tgt_tok.vocab_size, tc.seed)
        compile_model(model, tc.learning_rate, tc.clip_norm, tc.label_smoothing)
    finished = _finished(cfg, state)
    if finished and state.epoch > 0 and run.model_file.is_file():
        state.stop_reason = finished
        state.save(run.train_state)
        return TrainResult.from_state(state)
    state.stop_reason = None

    run.logs.mkdir(parents=True, exist_ok=True)
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    translator = Translator(model, src_tok, tgt_tok, cfg.decode)
    callbacks = [
        Throughput(data.target_tokens / max(1, data.steps_per_pass())),
        TimeBudget(state, tc.max_minutes),
        ValidationBLEU(translator, [p.src for p in bleu_pairs], [p.tgt for p in bleu_pairs]),
        BestModel(state, run.model_file, tc.patience),
        keras.callbacks.TensorBoard(str(run.logs / "tensorboard"), write_graph=False),
        Checkpoint(state, run.last_checkpoint, run.train_state, run.logs),
    ]
    if state.epoch < tc.epochs:
        # The shuffle seed moves on with the epoch count, so a resumed run continues with new
        # orders instead of replaying the batches the first run started with.
        data.seed = tc.seed + state.epoch
        model.fit(
            data.dataset(repeat=True),
            epochs=tc.epochs,
            initial_epoch=state.epoch,
            steps_per_epoch=tc.steps_per_epoch or data.steps_per_pass(),
            validation_data=valid_data.dataset(),
            validation_steps=valid_data.steps_per_pass(),
            shuffle=False,
            callbacks=callbacks,
            # The progress bar on a terminal; one line per epoch in a log file or pipe.
            verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0,
        )
    if not state.stop_reason:
        state.stop_reason = f"reached train.epochs={tc.epochs}"
    state.save(run.train_state)
    if not run.model_file.is_file():
        save_model(model, run.model_file)
    return TrainResult.from_state(state)
