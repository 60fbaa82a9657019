"""Checkpoint averaging: the element-wise mean of the weights of several epochs of one run.

Averaging the weights of a run's last epochs smooths out the noise of the last updates, and often
scores a little higher than any one of them (as Marian's and OpenNMT's `average_checkpoints` do;
Vaswani et al., 2017, averaged the last 5 or 20 checkpoints). With `train.average_checkpoints: N`
training keeps each epoch's model weights (not the optimizer state) as
`checkpoints/epoch-0007.weights.h5`: the last N epochs and the N best by validation BLEU
(:func:`epochs_to_keep`), so that `translator average` can also average the best N afterwards.

Everything here works on weight files and models, for the training callback
(`callbacks.CheckpointAverage`) and the `translator average` command alike.

Example:
    >>> files = epoch_weights(run.checkpoints)  # {7: Path(".../epoch-0007.weights.h5"), ...}
    >>> average_checkpoints(model, [files[e] for e in (5, 6, 7)])  # model now holds the mean
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from translator.io import ArtifactError, atomic_path, interrupts_deferred

_EPOCH_FILE = re.compile(r"epoch-(\d+)\.weights\.h5")


def epoch_weights_path(directory: Path, epoch: int) -> Path:
    """Where the weights of `epoch` (counted from 1) are kept: `epoch-0007.weights.h5`."""
    return Path(directory) / f"epoch-{epoch:04d}.weights.h5"


def epoch_weights(directory: Path) -> dict[int, Path]:
    """The kept epoch weight files in `directory`, by epoch (ascending); `{}` if there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    found = {}
    for path in directory.iterdir():
        match = _EPOCH_FILE.fullmatch(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def epochs_to_keep(val_bleu: Mapping[int, float | None], n: int) -> set[int]:
    """The epochs whose weights are kept: the last `n` and the `n` best by validation BLEU (an
    epoch without a score counts as the worst; among equal scores the later epoch is kept)."""
    epochs = sorted(val_bleu)
    best = sorted(epochs, key=lambda e: (_score(val_bleu[e]), e), reverse=True)
    return set(epochs[-n:]) | set(best[:n])


def select_epochs(
    val_bleu: Mapping[int, float | None], n: int, how: Literal["last", "best"]
) -> list[int]:
    """The `n` epochs to average among the kept ones, ascending: the latest (`last`) or those with
    the highest validation BLEU (`best`; among equal scores the later epoch)."""
    if how == "last":
        chosen = sorted(val_bleu)[-n:]
    elif how == "best":
        chosen = sorted(val_bleu, key=lambda e: (_score(val_bleu[e]), e), reverse=True)[:n]
    else:
        raise ValueError(f"how must be 'last' or 'best', got {how!r}")
    return sorted(chosen)


def _score(value: float | None) -> float:
    return -np.inf if value is None else float(value)


def spare_model(model: keras.Model) -> keras.Model:
    """A second, uncompiled and built instance of `model`'s architecture (its own weights, freshly
    initialised): the average is made there, so the model being trained is left untouched."""
    copy = type(model).from_config(model.get_config())
    copy.build_from_config(model.get_build_config())
    return copy


def save_weights(model: keras.Model, path: Path) -> None:
    """`model.save_weights(path)` atomically: to a temporary name beside `path`, then renamed.

    Keras needs the name to end in `.weights.h5`, so the temporary file is
    `.<name>.<random>.tmp.weights.h5` (training deletes such leftovers of a kill when it starts)."""
    with interrupts_deferred(), atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


def read_weights(model: keras.Model, path: Path) -> list[np.ndarray]:
    """The weights in the file `path` (`.weights.h5` or `.keras`), as `model.get_weights()` lists
    them; they are loaded into `model` on the way.

    Raises:
        FileNotFoundError: there is no such file.
        ArtifactError: the file is damaged or holds another architecture's weights (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        model.load_weights(path)
    except Exception as e:  # h5py, zipfile and Keras errors all mean "not these weights"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ArtifactError(
            f"{path} holds no readable weights of this model ({reason}); delete it and average "
            "other epochs"
        ) from None
    return model.get_weights()


def mean_weights(weight_sets: Iterable[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of several models' weights.

    Args:
        weight_sets: one list of arrays per model, all in the same order with the same shapes
            (e.g. `model.get_weights()` of models of one architecture); read one at a time, so
            a generator holds one set in memory besides the running sum.

    Returns:
        One array per weight, of its dtype: floating weights are averaged (summed in float64);
        any other (e.g. an integer counter) is taken from the last set.
    """
    total: list[np.ndarray] | None = None
    last: list[np.ndarray] = []
    count = 0
    for weights in weight_sets:
        arrays = [np.asarray(w) for w in weights]
        if total is None:
            total = [a.astype(np.float64) for a in arrays]
        else:
            if [a.shape for a in arrays] != [t.shape for t in total]:
                raise ValueError(
                    f"weight set {count + 1} does not match the first: weights of another model"
                )
            for t, a in zip(total, arrays, strict=True):
                t += a
        last, count = arrays, count + 1
    if total is None:
        raise ValueError("no weights to average")
    return [
        (t / count).astype(a.dtype) if np.issubdtype(a.dtype, np.floating) else a
        for t, a in zip(total, last, strict=True)
    ]


def average_checkpoints(model: keras.Model, paths: Sequence[Path]) -> keras.Model:
    """Load the element-wise mean of the weight files `paths` into `model` (and return it).

    `model` is only a vessel: each file is loaded into it in turn, then the mean replaces its
    weights. Raises what :func:`read_weights` raises.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    model.set_weights(mean_weights(read_weights(model, p) for p in paths))
    return model
