"""Training: build or resume the model, fit with the callbacks, keep the best by validation BLEU.

Where it writes (see :class:`~translator.rundir.RunDir`): `checkpoints/last.keras` and
`checkpoints/state.json` after each epoch, `model.keras` (the best model), `logs/metrics.csv`,
`logs/learning_curve.png` and `logs/tensorboard/`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import sys
from dataclasses import dataclass

import keras

from translator.compat import build_for_distribution
from translator.config import Config
from translator.data.batching import BucketedDataset, ExamplesSource
from translator.data.corpus import Pair
from translator.data.tokenizers import Tokenizer, pair_sampler
from translator.io import ArtifactError, atomic_leftovers
from translator.models import build_model, compile_model
from translator.models.saving import load_model, save_model
from translator.precision import policy_name
from translator.rundir import RunDir
from translator.training.callbacks import (
    BestModel,
    Checkpoint,
    DropStageRecord,
    Throughput,
    TimeBudget,
    ValidationBLEU,
    add_checkpoint_average,
)
from translator.training.distribute import (
    agree,
    describe,
    distribute_batches,
    make_strategy,
    scaled_learning_rate,
    worker_role,
)
from translator.training.schedule import LearningRateSchedule
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


def resume(run: RunDir, fingerprint: str) -> tuple[TrainState, keras.Model, object] | None:
    """The newest checkpoint to resume from: `(state, compiled model, its path)`, or None.

    A state (`state.json`, then `previous.json`) counts if it is readable and has `fingerprint`;
    it is paired with the checkpoint (`last.keras`, then `previous.keras`) whose optimizer step
    count it recorded, so a kill between two writes or a damaged file falls back to the epoch
    before, with a warning.

    Raises:
        ArtifactError: checkpoints exist for this run but none of them can be loaded.
    """
    states, problems = [], []
    for path in (run.train_state, run.previous_train_state):
        try:
            state = TrainState.load(path, fingerprint)
        except ArtifactError as e:
            problems.append(str(e))
            continue
        if state is not None:
            states.append(state)
    # Newest first by file, not by epoch: after the first epoch of a run trained again from
    # scratch, `previous.json` is the replaced run's last state, of a later epoch.
    for state in states:
        for path in (run.last_checkpoint, run.previous_checkpoint):
            if not path.is_file():
                continue
            try:
                model = load_model(path, compile=True)
            except ArtifactError as e:
                problems.append(str(e))
                continue
            steps = int(model.optimizer.iterations.numpy())
            if state.optimizer_steps is None or state.optimizer_steps == steps:
                for problem in dict.fromkeys(problems):
                    print(f"warning: {problem}; resuming from {path} instead", flush=True)
                return state, model, path
    if problems:  # damaged files, and nothing whole to resume from: never restart silently
        raise ArtifactError(
            f"no checkpoint in {run.checkpoints} can be resumed ({'; '.join(problems)}); "
            "rerun with --force to train from scratch"
        )
    return None


def train(
    cfg: Config,
    run: RunDir,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    train_examples: ExamplesSource,
    valid_pairs: list[Pair],
    fingerprint: str,
    verbose: int = 1,
    from_scratch: bool = False,
) -> TrainResult:
    """Train (or resume training) a model and keep the best one by validation BLEU.

    If `run.train_state` exists with the same `fingerprint` (same data, tokenizers and config),
    training continues from the newest whole checkpoint (see :func:`resume`), with its optimizer
    state, at the next epoch; `from_scratch` ignores the checkpoints.
    """
    keras.utils.set_random_seed(cfg.train.seed)
    tc = cfg.train
    role = worker_role(tc.distribute)
    strategy = make_strategy(tc)
    # The chief writes the run directory; other workers write to a scratch copy of its layout
    # (`workers/worker-N/` in the run directory: a worker killed before its `finally` leaves
    # it there, and the restarted worker clears it) and read the chief's checkpoints to resume.
    out = run if role.is_chief else worker_scratch(run, role.task_id)
    if not role.is_chief:
        print(f"[train] worker {role.task_id}: writing to {out.path}, reading {run.path}")
    keras.mixed_precision.set_dtype_policy(policy_name(tc.mixed_precision))
    try:
        return _train(cfg, run, out, strategy, src_tok, tgt_tok, train_examples, valid_pairs,
                      fingerprint, verbose, from_scratch)  # fmt: skip
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
        if out is not run:
            shutil.rmtree(out.path, ignore_errors=True)
            with contextlib.suppress(OSError):  # other workers' may still be there
                out.path.parent.rmdir()


def worker_scratch(run: RunDir, task_id: int) -> RunDir:
    """A new, empty `workers/worker-<task_id>/` in `run` for a non-chief worker to write to (what
    an earlier, killed, process of the same worker left there is removed)."""
    path = run.path / "workers" / f"worker-{task_id}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return RunDir(path)


def _train(
    cfg: Config,
    run: RunDir,
    out: RunDir,
    strategy,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    train_examples: ExamplesSource,
    valid_pairs: list[Pair],
    fingerprint: str,
    verbose: int,
    from_scratch: bool,
) -> TrainResult:
    """`train` inside its strategy and dtype policy; `out` is where this process writes."""
    tc = cfg.train
    replicas = strategy.num_replicas_in_sync
    # Subword sampling (train.sampling_*): the training pairs are segmented afresh each time
    # they are read; validation keeps the best segmentation.
    sampler = pair_sampler(
        src_tok, tgt_tok, tc.sampling_alpha, tc.sampling_nbest_size, tc.sampling_sides
    )
    if sampler is not None and verbose:
        print(f"subword sampling: {sampler.describe()}", flush=True)
    data = BucketedDataset.from_examples(
        train_examples,
        tc.batch_tokens,
        tc.max_batch_size,
        True,
        tc.seed,
        tc.shuffle_buffer,
        resegment=sampler,
    )
    valid_data = BucketedDataset(
        src_tok.encode_batch([p.src for p in valid_pairs]),
        tgt_tok.encode_batch([p.tgt for p in valid_pairs]),
        tc.batch_tokens,
        tc.max_batch_size,
        shuffle=False,
    )
    bleu_pairs = valid_pairs[: tc.valid_bleu_pairs] if tc.valid_bleu_pairs else valid_pairs

    # Temporary files of writes that a kill interrupted (they are never read).
    leftovers = [
        *atomic_leftovers(run.checkpoints),
        *atomic_leftovers(run.logs),  # metrics.csv, the learning curve
        *atomic_leftovers(run.path, "model.keras"),
    ]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    with strategy.scope():
        found = None if from_scratch else resume(run, fingerprint)
        if from_scratch and run.last_checkpoint.is_file():
            print(
                f"--force: training from scratch; the checkpoints in {run.checkpoints} are replaced"
            )
        if found is not None:
            state, model, path = found
            run.check_vocabularies(model, path, src_tok, tgt_tok)  # tokenizers swapped by hand
            print(f"resuming from {path} after epoch {state.epoch}", flush=True)
        else:
            state = TrainState(fingerprint)
            model = build_model(cfg.model, src_tok.vocab_size, tgt_tok.vocab_size, tc.seed)
            compile_model(
                model,
                scaled_learning_rate(tc, replicas),
                tc.clip_norm,
                tc.label_smoothing,
                tc.accumulate_steps,
            )
    finished = _finished(cfg, state)
    if finished and state.epoch > 0 and run.model_file.is_file():
        state.stop_reason = finished
        state.save(out.train_state)
        return TrainResult.from_state(state)
    state.stop_reason = None
    precision = policy_name(tc.mixed_precision)
    if tc.distribute != "none" or tc.accumulate_steps > 1 or precision != "float32":
        auto = " (train.mixed_precision: auto)" if tc.mixed_precision == "auto" else ""
        print(f"{describe(strategy, tc)}; {precision}{auto}", flush=True)

    out.logs.mkdir(parents=True, exist_ok=True)
    out.checkpoints.mkdir(parents=True, exist_ok=True)
    translator = Translator(model, src_tok, tgt_tok, cfg.decode)
    steps_per_pass = math.ceil(data.steps_per_pass() / replicas)
    callbacks = [
        Throughput(replicas * data.target_tokens / max(1, data.steps_per_pass())),
        TimeBudget(state, tc.max_minutes, agree=functools.partial(agree, strategy)),
        ValidationBLEU(
            translator,
            [p.src for p in bleu_pairs],
            [p.tgt for p in bleu_pairs],
            tc.valid_beam_size,
        ),
        LearningRateSchedule(state, scaled_learning_rate(tc, replicas), tc),
        BestModel(state, out.model_file, tc.patience),
        keras.callbacks.TensorBoard(str(out.logs / "tensorboard"), write_graph=False),
        Checkpoint(state, out),
    ]
    callbacks.insert(0, DropStageRecord([out.stage_marker("train")]))
    if tc.average_checkpoints:  # a worker other than the chief copies the chief's kept epochs
        add_checkpoint_average(
            callbacks, state, tc.average_checkpoints, out.checkpoints, run.checkpoints
        )
    if state.epoch < tc.epochs:
        # The shuffle seed moves on with the epoch count, so a resumed run continues with new
        # orders instead of replaying the batches the first run started with.
        data.seed = tc.seed + state.epoch
        single = replicas == 1 and tc.distribute == "none"
        if not single:
            build_for_distribution(model, strategy, next(iter(data.dataset())))
        valid_steps = math.ceil(valid_data.steps_per_pass() / replicas)
        model.fit(
            distribute_batches(strategy, lambda shard: data.dataset(repeat=True, shard=shard)),
            epochs=tc.epochs,
            initial_epoch=state.epoch,
            steps_per_epoch=tc.steps_per_epoch or steps_per_pass,
            # Across replicas the validation batches repeat, so that every replica has one at
            # every step (an uneven end would stall the others).
            # Keras makes a new validation iterator at every evaluation and deletes the last
            # one, which without autotune=False can wait for its autotuning thread (up to 60 s).
            validation_data=valid_data.dataset(autotune=False)
            if single
            else distribute_batches(
                strategy,
                lambda shard: valid_data.dataset(repeat=True, shard=shard, autotune=False),
            ),
            validation_steps=valid_steps,
            shuffle=False,
            callbacks=callbacks,
            # The progress bar on a terminal; one line per epoch in a log file or pipe.
            verbose=(1 if sys.stdout.isatty() else 2) if verbose else 0,
        )
    if not state.stop_reason:
        state.stop_reason = f"reached train.epochs={tc.epochs}"
    state.save(out.train_state)
    if not out.model_file.is_file():
        save_model(model, out.model_file)
    return TrainResult.from_state(state)
