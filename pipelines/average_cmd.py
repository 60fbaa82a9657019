"""`translator average RUN_DIR (--last N | --best N) [--output OUT_RUN_DIR] [--force]`.

Averages the epoch checkpoints a run kept (`train.average_checkpoints`, see
`translator.training.averaging`) after the fact, into a new run directory that `Translator.load`,
`translate`, `evaluate` and `export` take like any other: the run's config, tokenizers, data splits
(hard links where the filesystem allows, else copies) and prepare/tokenize stage records, with
`model.keras` = the average and `average.json` saying what was averaged. The directory appears
whole (it is written under a temporary name, then renamed). Prints the greedy validation BLEU of
the average beside that of the run's best single epoch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from translator.io import (
    ArtifactError,
    atomic_write_json,
    check_output_path,
    check_replaceable,
    current_umask,
    leftover_prefix,
    read_json,
    remove_dead_leftovers,
    require_utf8_path,
)
from translator.rundir import RunDir, RunDirBusyError

AVERAGE_RECORD = "average.json"


def add_average_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run trained with train.average_checkpoints"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", type=int, metavar="N", help="average the last N epochs")
    which.add_argument(
        "--best", type=int, metavar="N", help="average the N epochs with the best validation BLEU"
    )
    p.add_argument(
        "--output",
        metavar="OUT_RUN_DIR",
        help="the run directory to write (default: RUN_DIR-avgN for --last, RUN_DIR-bestN for "
        "--best)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT_RUN_DIR if it exists")


@dataclass
class AveragePlan:
    """What `translator average` will do: which epochs' files of `run` go into `out`."""

    run: RunDir
    out: Path
    how: Literal["last", "best"]
    epochs: list[int]
    files: list[Path]
    best_epoch: int  # the kept epoch with the best validation BLEU (the best single model)
    best_file: Path
    valid_pairs: int  # how many validation pairs are scored (as in training)


def kept_epochs(run: RunDir) -> dict[int, float | None]:
    """The epochs whose weights `run` kept and that its training state includes, with their
    validation BLEU (None if not logged), ascending."""
    from translator.training.averaging import epoch_weights

    # A training killed between its two writes leaves only the state before (as `resume` reads).
    state = next((p for p in (run.train_state, run.previous_train_state) if p.is_file()), None)
    if state is None:
        raise FileNotFoundError(
            f"{run.train_state} not found: {run.path} has no training state; train it first"
        )
    saved = read_json(state, "train the run again to rewrite it")
    if not isinstance(saved, dict) or not isinstance(saved.get("history", []), list):
        raise ArtifactError(f"{state} is not a training state; train the run again")
    done = int(saved.get("epoch", 0))
    scores = {int(row["epoch"]): row.get("val_bleu") for row in saved.get("history", [])}
    return {
        epoch: scores[epoch]
        for epoch in epoch_weights(run.checkpoints)
        if epoch <= done and epoch in scores
    }


def default_output(run: RunDir, how: str, n: int) -> Path:
    """`RUN_DIR-avgN` (`--last`) or `RUN_DIR-bestN` (`--best`), beside the run directory."""
    base = run.path if run.path.name not in ("", ".", "..") else run.path.resolve()
    return base.with_name(f"{base.name}-{'avg' if how == 'last' else 'best'}{n}")


def plan_average(
    run_dir: str | Path,
    how: Literal["last", "best"],
    n: int,
    output: str | Path | None,
    force: bool,
) -> AveragePlan:
    """Check everything before a model loads; `ValueError`/`FileNotFoundError` name the problem
    and what to do."""
    from translator.training.averaging import epoch_weights_path, select_epochs

    option = f"--{how} {n}"
    if n < 1:
        raise ValueError(f"--{how} must be at least 1, got {n}")
    run = RunDir(run_dir).require_trained()
    config = run.load_config()
    keep = config.train.average_checkpoints
    if keep == 0:
        raise ValueError(
            f"{run.path} kept no epoch checkpoints to average (train.average_checkpoints is 0 in "
            f"{run.config_file}); train with train.average_checkpoints: {max(n, 2)} (e.g. --set "
            f"train.average_checkpoints={max(n, 2)}) to keep the last and best epochs"
        )
    kept = kept_epochs(run)
    if n > keep:
        raise ValueError(
            f"{run.path} keeps the last {keep} and the best {keep} epoch checkpoints "
            f"(train.average_checkpoints: {keep}), fewer than {option} needs; train with "
            f"train.average_checkpoints: {n} or more, or average fewer"
        )
    if len(kept) < n:
        found = ", ".join(map(str, kept)) or "none"
        raise ValueError(
            f"{run.path} has {len(kept)} epoch checkpoints (epochs: {found}) in {run.checkpoints}, "
            f"fewer than {option} needs; train more epochs, or average fewer"
        )
    out = Path(output) if output else default_output(run, how, n)
    if out.resolve() == run.path.resolve():
        raise ValueError(f"--output {out} is the run directory itself; give another directory")
    if out.exists() and not force:
        raise ValueError(f"{out} exists; give --force to replace it, or another --output")
    check_output_path(out, "--output", directory=True)
    require_utf8_path(out, "--output")
    if out.exists():  # with --force: only an earlier average, never a directory holding the run
        check_replaceable(out, "--output", run.path, lambda d: (d / AVERAGE_RECORD).is_file())
    if not run.split("valid").is_file():
        raise FileNotFoundError(f"{run.split('valid')} not found: the average is scored on it")
    epochs = select_epochs(kept, n, how)
    [best] = select_epochs(kept, 1, "best")
    return AveragePlan(
        run=run,
        out=out,
        how=how,
        epochs=epochs,
        files=[epoch_weights_path(run.checkpoints, e) for e in epochs],
        best_epoch=best,
        best_file=epoch_weights_path(run.checkpoints, best),
        valid_pairs=config.train.valid_bleu_pairs or 0,
    )


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (free, and safe: every artifact is replaced by a rename, never rewritten in
    place), or a copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_run_dir(run: RunDir, out: Path, model, record: dict, force: bool = True) -> None:
    """Write `out` as a loadable run directory with `model` as its `model.keras`: whole, by a
    rename of a temporary directory beside it (an existing `out` is replaced with `force`;
    without it, an `out` that appeared while this ran is a `FileExistsError`)."""
    from translator.models.saving import save_model

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(out.parent, out.name)  # of killed runs of `average`
    tmp = RunDir(tempfile.mkdtemp(prefix=leftover_prefix(out.name), suffix=".tmp", dir=out.parent))
    try:
        # mkdtemp made it private (0700): the mode of a normal new directory
        os.chmod(tmp.path, 0o777 & ~current_umask())
        shutil.copy2(run.config_file, tmp.config_file)
        shutil.copytree(run.tokenizers, tmp.tokenizers)
        if run.split("train").parent.is_dir():
            shutil.copytree(
                run.split("train").parent, tmp.split("train").parent, copy_function=_link_or_copy
            )
        for stage in ("prepare", "tokenize"):
            if run.stage_marker(stage).is_file():
                tmp.stage_marker(stage).parent.mkdir(exist_ok=True)
                shutil.copy2(run.stage_marker(stage), tmp.stage_marker(stage))
        save_model(model, tmp.model_file)
        atomic_write_json(tmp.path / AVERAGE_RECORD, record)
        if out.exists() and not force:
            raise FileExistsError(
                f"{out} was written by someone else while this average ran; give another "
                "--output, or --force to replace it"
            )
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp.path, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp.path, out)
    finally:
        if tmp.path.exists():
            shutil.rmtree(tmp.path, ignore_errors=True)


def _greedy_bleu(translator, pairs) -> tuple[float, float]:
    """Greedy BLEU of `pairs` and the length ratio (hypothesis / reference, BLEU's tokens)."""
    import warnings

    from translator.evaluation.metrics import bleu, bleu_lengths

    with warnings.catch_warnings():  # empty outputs of a weak model are expected here
        warnings.simplefilter("ignore", UserWarning)
        hyps = translator.translate([p.src for p in pairs], beam_size=1)
    sys_len, ref_len = bleu_lengths(hyps, [p.tgt for p in pairs])
    return bleu(hyps, [p.tgt for p in pairs]), sys_len / max(ref_len, 1)


def cmd_average(args) -> int:
    how: Literal["last", "best"] = "last" if args.last is not None else "best"
    source = RunDir(args.run_dir).require_trained()
    # The run's writer lock: a training run replaces the epoch checkpoints and the training state
    # as it goes (averages made beside one failed on files deleted after planning).
    try:
        with source.lock():
            return _average(args, how)
    except RunDirBusyError as e:
        raise RunDirBusyError(
            f"{e}; a run is averaged when no other translator process (such as its training) "
            "writes it"
        ) from None


def _average(args, how: Literal["last", "best"]) -> int:
    from translator.data.corpus import read_tsv
    from translator.training.averaging import average_checkpoints, read_weights, spare_model
    from translator.translate import Translator

    plan = plan_average(
        args.run_dir, how, args.last if how == "last" else args.best, args.output, args.force
    )
    run = plan.run
    pairs = read_tsv(run.split("valid"))
    pairs = pairs[: plan.valid_pairs] if plan.valid_pairs else pairs
    averaged = Translator.load(run)  # its model becomes the average
    single = Translator(
        spare_model(averaged.model), averaged.src_tokenizer, averaged.tgt_tokenizer, averaged.decode
    )
    read_weights(single.model, plan.best_file)
    average_checkpoints(averaged.model, plan.files)
    (avg_bleu, avg_ratio), (single_bleu, single_ratio) = (
        _greedy_bleu(averaged, pairs),
        _greedy_bleu(single, pairs),
    )
    scores = {"average": avg_bleu, "best_single": single_bleu}
    record = {
        "run_dir": str(run.path),
        "selection": how,
        "epochs": plan.epochs,
        "files": [str(f) for f in plan.files],
        "valid_bleu": {
            "pairs": len(pairs),
            "average": scores["average"],
            "average_length_ratio": round(avg_ratio, 4),
            "best_single": {
                "epoch": plan.best_epoch,
                "bleu": scores["best_single"],
                "length_ratio": round(single_ratio, 4),
            },
        },
    }
    write_run_dir(run, plan.out, averaged.model, record, force=args.force)
    which = f"the last {len(plan.epochs)}" if how == "last" else f"the best {len(plan.epochs)}"
    print(
        f"averaged epochs {', '.join(map(str, plan.epochs))} of {run.path} ({which}) into "
        f"{plan.out / 'model.keras'}"
    )
    print(
        f"valid BLEU (greedy, {len(pairs)} pairs of {run.split('valid')}): average "
        f"{avg_bleu:.2f} (length ratio {avg_ratio:.2f}), best single model {single_bleu:.2f} "
        f"(length ratio {single_ratio:.2f}, epoch {plan.best_epoch})"
    )
    return 0
