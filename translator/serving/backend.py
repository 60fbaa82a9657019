"""What the server translates with: a `Backend`, from a run directory or an export.

The HTTP layer (`translator.serving.app`) and the micro-batcher only see this protocol, so a run
directory (the Keras model in Python, :class:`PythonBackend`) and an exported SavedModel serve the
same API. Backends are called from one worker thread at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from translator.translate import Translator

EXPORT_MARKER = "saved_model.pb"


@runtime_checkable
class Backend(Protocol):
    """A translation model behind the server.

    Attributes:
        name: shown by `GET /health` (the run or export directory's name).
        defaults: the decoding options a request gets when it gives none: `beam_size`,
            `n_best`, `length_penalty`.
        has_attention: whether `align` works (the model has attention).
        fixed_options: True when the options are baked into the model (an export): a request
            may then only ask for the defaults.
    """

    name: str
    defaults: dict
    has_attention: bool
    fixed_options: bool

    def translate(
        self, texts: list[str], *, beam_size: int, n_best: int, length_penalty: float
    ) -> list[list[tuple[str, float]]]:
        """Per input, its `n_best` translations as `(text, score)`, best first."""
        ...

    def align(self, text: str) -> dict:
        """The best translation of one sentence with its attention, as a JSON-ready dict:
        `source_tokens`, `target_tokens`, `translation`, `attention` (a list of `T_out` rows of
        `S` floats). Raises `ValueError` when the model has no attention."""
        ...


class PythonBackend:
    """A :class:`Backend` over a `Translator` (a run directory's Keras model)."""

    fixed_options = False

    def __init__(self, translator: Translator, name: str = "model"):
        self.translator = translator
        self.name = name
        decode = translator.decode
        self.defaults = {
            "beam_size": decode.beam_size,
            "n_best": decode.n_best,
            "length_penalty": decode.length_penalty,
        }
        self.has_attention = getattr(translator.model, "attention", None) is not None

    def translate(
        self, texts: list[str], *, beam_size: int, n_best: int, length_penalty: float
    ) -> list[list[tuple[str, float]]]:
        out = self.translator.translate_nbest(
            list(texts), n_best=n_best, beam_size=beam_size, length_penalty=length_penalty
        )
        return [[(text, float(score)) for text, score in per_input] for per_input in out]

    def align(self, text: str) -> dict:
        a = self.translator.align(text)  # ValueError without attention
        return {
            "source_tokens": list(a.source_tokens),
            "target_tokens": list(a.target_tokens),
            "translation": a.translation,
            "attention": a.attention.astype(float).tolist(),
        }


def open_backend(path: str | Path) -> Backend:
    """The backend for a run directory (its best model) or an export directory.

    Raises:
        FileNotFoundError (`translator.rundir.ModelNotFoundError`): `path` does not exist, or is
            neither a run directory with a trained model nor an export, with what to do.
        translator.config.ConfigError: the run directory's config is damaged.
    """
    from translator.rundir import ModelNotFoundError, RunDir

    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"not found: {path}; give a run directory or an export directory")
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{path} is a file; give a run directory (with config.yaml and model.keras) or an "
            f"export directory (with {EXPORT_MARKER})"
        )
    if (path / EXPORT_MARKER).is_file():
        # ---- Export directories: ExportBackend, written with `translator export` -------------
        from translator.export import load_export_backend

        return load_export_backend(path)
        # ---------------------------------------------------------------------------------------
    run = RunDir(path)
    if not run.config_file.is_file():
        raise ModelNotFoundError(
            f"{path} is neither a run directory (no config.yaml) nor an export directory (no "
            f"{EXPORT_MARKER}); give a trained run directory, e.g. runs/tiny, or an export"
        )
    run.require_trained()
    from translator.translate import Translator

    return PythonBackend(Translator.load(run), name=run.name)
