"""Saving and loading `.keras` files: atomically, safely, with errors that name the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras

from translator.io import ArtifactError, atomic_path, interrupts_deferred


def save_model(model: keras.Model, path: Path) -> None:
    """Save a `.keras` file atomically (a temporary name, then a rename); Ctrl-C or SIGTERM
    during the save acts when it ends (Keras would swallow it: see `interrupts_deferred`)."""
    with interrupts_deferred(), atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path: Path, compile: bool = False, what_to_do: str = "") -> keras.Model:
    """Load a `.keras` file with `safe_mode=True`.

    Raises:
        FileNotFoundError: there is no such file.
        ArtifactError: the file exists but is not a loadable model (truncated, garbage, another
            model's file); the message names it and ends with `what_to_do`.
    """
    import translator.models  # noqa: F401  (registers the custom classes)

    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a directory, not a .keras model file")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    hint = f"; {what_to_do}" if what_to_do else ""
    if not zipfile.is_zipfile(path):
        # Keras would say "File not found" for a file that exists.
        raise ArtifactError(
            f"{path} is not a readable Keras model (not a .keras zip archive: truncated, or "
            f"another kind of file){hint}"
        )
    try:
        with interrupts_deferred():
            return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # zipfile, h5py, JSON and Keras errors all mean "not this model"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ArtifactError(
            f"{path} is not a readable Keras model ({type(e).__name__}: {reason}){hint}"
        ) from None
