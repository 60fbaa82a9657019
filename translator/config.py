"""Typed, validated experiment configuration.

One YAML file describes an experiment. It is loaded into nested dataclasses; an unknown key or a bad
value raises :class:`ConfigError` naming the key path and the valid choices.

Example:
    >>> cfg = load_config("configs/tiny.yaml", overrides=["train.epochs=3"])
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key path."""


@dataclass
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned.

    `corpus` is `ding-de-en` (bundled), `tsv` (pairs in `train`/`valid`/`test` TSV files),
    `text` (aligned files: `train`, `valid`, `test` are `SRC_FILE,TGT_FILE`), or `tfds:NAME`
    (a TensorFlow Datasets translation dataset, e.g. `tfds:ted_hrlr_translate/pt_to_en`).
    """

    corpus: str = "ding-de-en"
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    use_phrases: bool = False
    max_words: int = 50
    max_train_pairs: int | None = None
    max_valid_pairs: int | None = None
    max_test_pairs: int | None = None
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 1234
    skip_malformed: bool = False
    tfds_data_dir: str | None = None


@dataclass
class TokenizerConfig:
    """Source and target tokenizers."""

    type: Literal["sentencepiece", "word", "char"] = "sentencepiece"
    model_type: Literal["unigram", "bpe"] = "unigram"
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    character_coverage: float = 1.0
    lowercase: bool = False
    min_frequency: int = 1


@dataclass
class EncoderConfig:
    """A stack of recurrent layers of one kind, optionally bidirectional."""

    cell: Literal["rnn", "gru", "lstm"] = "lstm"
    num_layers: int = 1
    units: int = 256
    bidirectional: bool = False
    merge: Literal["concat", "sum", "ave"] = "concat"
    activation: Literal["tanh", "relu"] = "tanh"
    recurrent_initializer: str = "orthogonal"
    dropout: float = 0.0


@dataclass
class DecoderConfig:
    """A stack of GRU or LSTM layers started from the context vector.

    `attention` over the encoder outputs: `none`, `bahdanau` (additive; queried with the previous
    decoder state) or `luong` (multiplicative; queried with the new state), as JoeyNMT.
    `attention_score` is Luong's score, `general` (`h^T W e`) or `dot` (`h^T e`, needs encoder
    output size == `units`). `input_feeding` feeds the previous attentional vector back into the
    next step's input (Luong et al., 2015). Both are ignored without attention.
    """

    cell: Literal["gru", "lstm"] = "lstm"
    num_layers: int = 1
    units: int = 256
    dropout: float = 0.0
    attention: Literal["none", "bahdanau", "luong"] = "none"
    attention_score: Literal["general", "dot"] = "general"
    input_feeding: bool = True


@dataclass
class ModelConfig:
    """Embeddings, encoder, bridge and decoder."""

    embedding_dim: int = 256
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    init_hidden: Literal["dense", "last", "zero"] = "dense"
    embedding_dropout: float = 0.0
    output_dropout: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation, batching, early stopping and checkpoints."""

    epochs: int = 10
    batch_tokens: int = 4096
    max_batch_size: int = 128
    learning_rate: float = 0.002
    clip_norm: float = 1.0
    label_smoothing: float = 0.0
    patience: int = 3
    seed: int = 1
    max_minutes: float | None = None
    steps_per_epoch: int | None = None
    valid_bleu_pairs: int | None = 500
    # None shuffles the whole training set each pass (a smaller buffer only mixes neighbours, and
    # the data may be ordered: the bundled dictionary phrases come sorted after the sentences).
    shuffle_buffer: int | None = None


@dataclass
class DecodeConfig:
    """Decoding settings for translation and evaluation."""

    beam_size: int = 1
    n_best: int = 1
    length_penalty: float = 0.0
    max_output_ratio: float = 1.5
    max_output_extra: int = 10
    min_output_length: int = 0
    batch_size: int = 64


@dataclass
class EvalConfig:
    """Evaluation of the test split."""

    metrics: list[str] = field(default_factory=lambda: ["bleu", "chrf"])


@dataclass
class Config:
    """A whole experiment."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, name))


METRICS = ("bleu", "chrf", "ter")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the type annotation `tp`, converting ints to floats where expected."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping (section), got {value!r}")
        return _build(tp, value, path)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(a) for a in args)
            raise ConfigError(f"{path}: invalid value {value!r}; valid choices: {choices}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{path}'; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    obj = cls(**kwargs)
    _validate(obj, prefix)
    return obj


def _check(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


def _validate(obj: Any, prefix: str) -> None:
    p = (prefix + ".") if prefix else ""
    if isinstance(obj, EncoderConfig | DecoderConfig):
        _check(obj.num_layers >= 1, p + "num_layers", "must be at least 1")
        _check(obj.units >= 1, p + "units", "must be at least 1")
        _check(0.0 <= obj.dropout < 1.0, p + "dropout", "must be in [0, 1)")
    if isinstance(obj, EncoderConfig):
        valid_init = ("orthogonal", "identity", "glorot_uniform", "random_normal", "zeros")
        _check(
            obj.recurrent_initializer in valid_init,
            p + "recurrent_initializer",
            f"invalid value {obj.recurrent_initializer!r}; valid choices: {', '.join(valid_init)}",
        )
        if obj.cell != "rnn":
            _check(
                obj.activation == "tanh",
                p + "activation",
                "only cell: rnn takes another activation than tanh",
            )
            _check(
                obj.recurrent_initializer != "identity",
                p + "recurrent_initializer",
                "'identity' (IRNN) is only for cell: rnn",
            )
    if isinstance(obj, TokenizerConfig):
        _check(obj.src_vocab_size >= 8, p + "src_vocab_size", "must be at least 8")
        _check(obj.tgt_vocab_size >= 8, p + "tgt_vocab_size", "must be at least 8")
    if isinstance(obj, TrainConfig):
        _check(obj.epochs >= 1, p + "epochs", "must be at least 1")
        _check(obj.batch_tokens >= 1, p + "batch_tokens", "must be positive")
        _check(obj.learning_rate > 0, p + "learning_rate", "must be positive")
        _check(
            obj.shuffle_buffer is None or obj.shuffle_buffer >= 1,
            p + "shuffle_buffer",
            "must be at least 1 (or null: the whole training set)",
        )
        _check(0.0 <= obj.label_smoothing < 1.0, p + "label_smoothing", "must be in [0, 1)")
    if isinstance(obj, DecodeConfig):
        _check(obj.beam_size >= 1, p + "beam_size", "must be at least 1")
        _check(obj.n_best >= 1, p + "n_best", "must be at least 1")
        _check(obj.n_best <= obj.beam_size, p + "n_best", "must not exceed decode.beam_size")
        _check(obj.max_output_ratio > 0, p + "max_output_ratio", "must be positive")
    if isinstance(obj, EvalConfig):
        for m in obj.metrics:
            _check(
                m in METRICS,
                p + "metrics",
                f"invalid metric {m!r}; valid choices: {', '.join(METRICS)}",
            )
    if isinstance(obj, ModelConfig):
        enc, dec = obj.encoder, obj.decoder
        if dec.attention == "luong" and dec.attention_score == "dot":
            enc_size = enc.units * (2 if enc.bidirectional and enc.merge == "concat" else 1)
            _check(
                enc_size == dec.units,
                p + "decoder.attention_score",
                f"'dot' scores h^T e, so the encoder output size ({enc_size}) must equal "
                f"model.decoder.units ({dec.units}); use 'general'",
            )
        if obj.init_hidden == "last":
            enc_units = enc.units * (2 if enc.bidirectional and enc.merge == "concat" else 1)
            _check(
                enc_units == dec.units,
                p + "init_hidden",
                f"'last' passes the encoder state unchanged, so encoder output size ({enc_units}) must "
                f"equal model.decoder.units ({dec.units}); use 'dense' or 'zero'",
            )
            _check(
                not (enc.cell == "gru" and dec.cell == "lstm")
                and not (enc.cell == "rnn" and dec.cell == "lstm"),
                p + "init_hidden",
                f"'last' cannot start an LSTM decoder (h, c) from a {enc.cell} encoder state (h); use 'dense' or 'zero'",
            )


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from a plain mapping."""
    if not isinstance(values, dict):
        raise ConfigError("a config must be a mapping of sections")
    return _build(Config, values)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (the value is YAML, so `3`, `0.5`, `true` and `[a, b]` work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [k for k in key.strip().split(".") if k]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse value: {e}") from None
    return path, value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to a raw config mapping (in place, and returned)."""
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for k in path[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{k}' is not a section")
            node = child
        node[path[-1]] = value
    return values


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file, apply overrides and validate.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings applied after loading.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    values.setdefault("name", _default_name(path))
    apply_overrides(values, overrides or [])
    try:
        return config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _default_name(path: Path) -> str:
    """`configs/ding-de-en/lstm.yaml` -> `ding-de-en-lstm`; `configs/tiny.yaml` -> `tiny`."""
    parts = path.with_suffix("").parts
    if "configs" in parts:
        rest = parts[parts.index("configs") + 1 :]
        return "-".join(rest)
    return path.stem


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from translator.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True))
