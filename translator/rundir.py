"""The run directory: the one owner of its layout, its config and whether it holds a trained model.

```
RUN_DIR/
  config.yaml              the resolved config the run used
  stages/<stage>.json      fingerprint and summary of each finished stage
  data/{train,valid,test}.tsv, data/stats.json
  data/train-NNNNN-of-NNNNN.tfrecord, data/train.lengths.npy, data/train.records.json
                           the encoded training split (translator.data.records), from tokenize
  tokenizers/{src,tgt}.{model|json}
  checkpoints/last.keras   weights + optimizer state after the last epoch; state.json beside it
  checkpoints/previous.keras, previous.json   the epoch before, kept until the next is whole
  model.keras              the best model
  logs/metrics.csv, logs/learning_curve.png, logs/tensorboard/
  eval/                    the evaluate stage's hypotheses and scores; eval/cache/ (hypothesis cache)
```

Nothing here imports TensorFlow, so the command line can check a run directory before loading it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from translator.config import Config, ConfigError, config_from_dict, save_config
from translator.io import require_utf8_path

SPLITS = ("train", "valid", "test")


class ModelNotFoundError(FileNotFoundError):
    """A run directory has no trained model (yet)."""


class RunDirBusyError(RuntimeError):
    """Another process holds the run directory's writer lock."""


class RunDir:
    """Paths and config of one run directory.

    Example:
        >>> run = RunDir("runs/ding-de-en-lstm")
        >>> run.require_trained()
        >>> config = run.load_config()
    """

    def __init__(self, path: str | Path):
        require_utf8_path(path, "run directory")
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:  # messages name the directory, not the object
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    # -- layout -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The directory's name (resolved, so `.` gives a real name)."""
        return self.path.resolve().name

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    def split(self, name: str) -> Path:
        """`data/<name>.tsv`, a prepared split."""
        return self.path / "data" / f"{name}.tsv"

    @property
    def data_stats(self) -> Path:
        return self.path / "data" / "stats.json"

    @property
    def train_records(self) -> Path:
        """`data/train.records.json`, the manifest of the encoded training split's TFRecord
        shards (see `translator.data.records`)."""
        return self.path / "data" / "train.records.json"

    @property
    def tokenizers(self) -> Path:
        return self.path / "tokenizers"

    def tokenizer_file(self, kind: str, side: str) -> Path:
        """Where the `side` (`src` or `tgt`) tokenizer of `kind` lives."""
        from translator.data.tokenizers import tokenizer_path

        return tokenizer_path(self.tokenizers, kind, side)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.keras"

    @property
    def train_state(self) -> Path:
        return self.checkpoints / "state.json"

    @property
    def previous_checkpoint(self) -> Path:
        """The checkpoint of the epoch before `last_checkpoint` (kept until a newer one is whole)."""
        return self.checkpoints / "previous.keras"

    @property
    def previous_train_state(self) -> Path:
        return self.checkpoints / "previous.json"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def metrics_log(self) -> Path:
        return self.logs / "metrics.csv"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def eval_cache(self) -> Path:
        return self.eval_dir / "cache"

    def stage_marker(self, stage: str) -> Path:
        return self.path / "stages" / f"{stage}.json"

    def stage_record(self, stage: str) -> dict:
        """What a finished stage recorded (`fingerprint`, `summary`); `{}` if it has not run.

        Raises:
            ArtifactError: the record exists but is damaged (named, with what to do).
        """
        from translator.io import ArtifactError, read_json

        marker = self.stage_marker(stage)
        if not marker.is_file():
            return {}
        saved = read_json(
            marker,
            f"delete it to run the {stage} stage again (the stages after it then run again too)",
        )
        if not isinstance(saved, dict):
            raise ArtifactError(f"{marker} is not a stage record; delete it to run {stage} again")
        return saved

    def stage_summary(self, stage: str) -> dict:
        """A finished stage's summary for readers (`{}` if it has not run or is damaged)."""
        from translator.io import ArtifactError

        try:
            return self.stage_record(stage).get("summary", {})
        except (ArtifactError, OSError):
            return {}

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run directory's writer lock for the `with` block.

        One writer at a time: a stage or `run` takes this lock; readers (`translate`, `evaluate`,
        `bench`) need none, since every artifact is written atomically. It is an OS lock on
        `.lock` (`flock`), released when the process ends however it ends, so a killed run never
        leaves a stale lock. A second writer gets :class:`RunDirBusyError` at once, naming the
        holder's PID.
        """
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_file, "a+", encoding="utf-8")  # noqa: SIM115 (closed on release)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunDirBusyError(
                f"{self.path} is in use by another translator process (PID {holder}); wait for "
                "it to finish, or give another --run-dir"
            ) from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield self
        finally:
            f.close()  # releases the lock

    # -- config and state ---------------------------------------------------------------------
    def load_config(self) -> Config:
        """The run's resolved config; `ConfigError` naming the file if it is missing or invalid."""
        import yaml

        path = self.config_file
        if not path.is_file():
            raise ConfigError(f"{path} not found: {self.path} is not a run directory")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a readable YAML config ({e})") from None
        if not values:
            raise ConfigError(
                f"{path} is empty: the run's resolved config is lost (a run directory's "
                "config.yaml is never empty); rerun `translator run CONFIG --run-dir "
                f"{self.path}` with the config it was made with, which writes it again"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: not a config (a mapping of sections); the file is damaged")
        try:
            return config_from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save_config(self, config: Config) -> None:
        """Write the resolved config (atomically)."""
        save_config(config, self.config_file)

    def is_trained(self) -> bool:
        return self.config_file.is_file() and self.model_file.is_file()

    def check_vocabularies(self, model, model_path: str | Path, src_tok, tgt_tok) -> None:
        """Check that the tokenizers have the vocabulary sizes `model` was trained with (its
        embeddings and output layer), as loaded from this run directory; a model without
        `src_vocab_size` / `tgt_vocab_size` attributes is not checked.

        Tokenizers replaced after training would otherwise fail at translation time, deep in
        TensorFlow (an id past the embedding), or decode ids past their own vocabulary.

        Raises:
            ArtifactError: naming the tokenizer file and the model file, with what to do.
        """
        from translator.io import ArtifactError

        for side, tok, what in (("src", src_tok, "source"), ("tgt", tgt_tok, "target")):
            expected = getattr(model, f"{side}_vocab_size", None)
            if expected is None or tok.vocab_size == expected:
                continue
            raise ArtifactError(
                f"{self.tokenizer_file(tok.type_name, side)} has {tok.vocab_size} {what} "
                f"vocabulary entries, but {model_path} was trained with {expected}: the "
                "tokenizers changed after training. Restore the tokenizers the model was trained "
                f"with, or train the model again on these: translator train CONFIG --run-dir "
                f"{self.path} --force"
            )

    def check_tokenizers_trained_with(self, model_path: str | Path, src_tok, tgt_tok) -> None:
        """Check that the tokenizers are the ones training recorded (`tokenizer_digests` in
        `stages/train.json`, written when a training run ends); runs without that record are not
        checked.

        `tokenize --force` replaces the tokenizers and leaves the trained model until it is
        trained again: with vocabularies of the same size, translation ran on silently, with
        ids that mean other pieces (nonsense output, low scores).

        Raises:
            ArtifactError: naming the tokenizer file and the model file, with what to do.
        """
        from translator.data.tokenizers import tokenizer_digest
        from translator.io import ArtifactError

        recorded = self.stage_summary("train").get("tokenizer_digests") or {}  # damaged: {}
        for side, tok, what in (("src", src_tok, "source"), ("tgt", tgt_tok, "target")):
            if side in recorded and recorded[side] != tokenizer_digest(tok):
                raise ArtifactError(
                    f"{self.tokenizer_file(tok.type_name, side)} is not the {what} tokenizer "
                    f"{model_path} was trained with (the tokenize stage ran again after "
                    "training): train the model on these tokenizers (translator train CONFIG "
                    f"--run-dir {self.path} --force), or restore the tokenizers it was trained with"
                )

    def require_trained(self) -> RunDir:
        """`self`, or :class:`ModelNotFoundError` saying which stage to run."""
        if not self.path.is_dir():
            what = "is a file, not a run directory" if self.path.exists() else "not found"
            raise ModelNotFoundError(f"run directory {what}: {self.path}")
        if (self.path / "saved_model.pb").is_file():
            raise ModelNotFoundError(
                f"{self.path} is an export (a SavedModel), not a run directory; serve it with "
                f"translator serve {self.path}, or load it with tf.saved_model.load (README, "
                "Deploy), or give the run directory it was exported from"
            )
        if not self.is_trained():
            if self.model_file.is_file():
                raise ModelNotFoundError(
                    f"{self.config_file} not found: {self.path} holds a model but not the config "
                    "that describes it; copy the run's config.yaml back (or train the run again)"
                )
            raise ModelNotFoundError(
                f"{self.model_file} not found: {self.path} has no trained model; run the `train` "
                f"stage first: translator run CONFIG --run-dir {self.path} --stages "
                "prepare,tokenize,train"
            )
        return self
