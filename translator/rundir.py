"""What a run directory must hold to translate; checked without importing TensorFlow."""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"


class ModelNotFoundError(FileNotFoundError):
    """A run directory has no trained model (yet)."""


def require_trained(run_dir: str | Path, model_file: str = MODEL_FILE) -> tuple[Path, Path]:
    """Return the config and model paths of `run_dir`, or raise :class:`ModelNotFoundError`
    saying which stage to run."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    model_path = run_dir / model_file
    if not run_dir.is_dir():
        raise ModelNotFoundError(f"run directory not found: {run_dir}")
    if not config_path.is_file() or not model_path.is_file():
        missing = config_path if not config_path.is_file() else model_path
        raise ModelNotFoundError(
            f"{run_dir} has no trained model ({missing.name} is missing); run the `train` stage "
            f"first: translator run CONFIG --run-dir {run_dir} --stages prepare,tokenize,train"
        )
    return config_path, model_path
