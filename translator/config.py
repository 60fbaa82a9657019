"""Typed, validated experiment configuration.

One YAML file describes an experiment. It is loaded into nested dataclasses; an unknown key or a bad
value raises :class:`ConfigError` naming the key path and the valid choices.

Example:
    >>> cfg = load_config("configs/tiny.yaml", overrides=["train.epochs=3"])
    >>> cfg.train.epochs
    3

(Just over 500 lines: each section's fields, defaults and checks stand together, so this module is
the config's one reference; the YAML loading at its end is small.)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from translator.data.corpus import BUNDLED
from translator.evaluation.metrics import METRICS
from translator.io import describe_unicode_problem, shown
from translator.layers import (
    ATTENTIONS,
    BRIDGES,
    CELLS,
    DECODER_CELLS,
    ELMAN_ACTIVATIONS,
    LUONG_SCORES,
    MERGE_MODES,
    output_size,
)

# The choices a config may make are the layers' own (`Literal[tuple]` is `Literal[*tuple]`).
CellKind = Literal[CELLS]  # type: ignore[valid-type]
DecoderCellKind = Literal[DECODER_CELLS]  # type: ignore[valid-type]
MergeMode = Literal[MERGE_MODES]  # type: ignore[valid-type]
Activation = Literal[ELMAN_ACTIVATIONS]  # type: ignore[valid-type]
AttentionKind = Literal[ATTENTIONS]  # type: ignore[valid-type]
LuongScore = Literal[LUONG_SCORES]  # type: ignore[valid-type]
BridgeKind = Literal[BRIDGES]  # type: ignore[valid-type]
RECURRENT_INITIALIZERS = (
    "orthogonal",
    "identity",
    "glorot_uniform",
    "glorot_uniform_per_gate",
    "random_normal",
    "zeros",
)


CORPUS_KINDS = (BUNDLED, "tsv", "text")


def _is_tfds_name(corpus: str) -> bool:
    """`tfds:NAME` with a non-empty NAME (whether TFDS has it is checked when it is read)."""
    return corpus.startswith("tfds:") and corpus[len("tfds:") :].strip() != ""


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key path."""


def _check(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_stack(section: Any, p: str) -> None:
    """The checks an encoder and a decoder stack share."""
    _check(section.num_layers >= 1, p + "num_layers", "must be at least 1")
    _check(section.units >= 1, p + "units", "must be at least 1")
    _check(0.0 <= section.dropout < 1.0, p + "dropout", "must be in [0, 1)")
    _check(0.0 <= section.recurrent_dropout < 1.0, p + "recurrent_dropout", "must be in [0, 1)")


@dataclass
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned.

    `corpus` is `ding-de-en` (bundled), `tsv` (pairs in `train`/`valid`/`test` TSV files),
    `text` (aligned files: `train`, `valid`, `test` are `SRC_FILE,TGT_FILE`), or `tfds:NAME`
    (a TensorFlow Datasets translation dataset, e.g. `tfds:ted_hrlr_translate/pt_to_en`).

    `use_phrases` adds the bundled corpus' dictionary phrases to its training sentences;
    `sentence_repeats` N puts each training sentence N times into the training split beside one
    copy of each phrase, weighting the sentences (what valid and test are) against the phrases,
    as OpenNMT-py's per-corpus `weight` does; without the phrases there is nothing to weight
    against, and it has no effect (so a config that sets it can be pointed at another corpus).
    """

    corpus: str = "ding-de-en"
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    src_lang: str = "de"
    tgt_lang: str = "en"
    use_phrases: bool = False
    sentence_repeats: int = 1
    max_words: int = 50
    max_train_pairs: int | None = None
    max_valid_pairs: int | None = None
    max_test_pairs: int | None = None
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    split_seed: int = 1234
    skip_malformed: bool = False
    tfds_data_dir: str | None = None

    def __post_init__(self) -> None:
        p = "data."
        _check(
            self.corpus in CORPUS_KINDS or _is_tfds_name(self.corpus),
            p + "corpus",
            f"invalid value {self.corpus!r}; valid choices: {', '.join(CORPUS_KINDS)}, tfds:NAME "
            "(e.g. tfds:ted_hrlr_translate/pt_to_en)",
        )
        _check(self.sentence_repeats >= 1, p + "sentence_repeats", "must be at least 1")
        _check(self.max_words >= 1, p + "max_words", f"must be at least 1, got {self.max_words}")
        for key in ("max_train_pairs", "max_valid_pairs", "max_test_pairs"):
            value = getattr(self, key)
            _check(
                value is None or value >= 1,
                p + key,
                f"must be at least 1 (or null: all pairs), got {value}",
            )
        for key in ("valid_fraction", "test_fraction"):
            value = getattr(self, key)
            _check(
                _finite(value) and 0 < value < 1,
                p + key,
                f"must be a number in (0, 1), the share of the pairs held out, got {value!r}",
            )
        _check(
            self.valid_fraction + self.test_fraction < 1,
            p + "test_fraction",
            f"data.valid_fraction + data.test_fraction must be below 1 (some pairs must be left "
            f"for training), got {self.valid_fraction} + {self.test_fraction}",
        )
        _check(
            0 <= self.split_seed < 2**32,
            p + "split_seed",
            f"must be in [0, 2**32), got {self.split_seed}",
        )
        for key in ("src_lang", "tgt_lang"):
            _check(getattr(self, key).strip() != "", p + key, "must be a non-empty string")

    @property
    def effective_sentence_repeats(self) -> int:
        """How many times the training sentences are read: `sentence_repeats` with the bundled
        corpus' phrases, else 1 (nothing to weight them against)."""
        return self.sentence_repeats if self.corpus == BUNDLED and self.use_phrases else 1


@dataclass
class TokenizerConfig:
    """Source and target tokenizers.

    `joint_vocab`: one tokenizer trained on source and target text together, saved for both
    sides (`tokenizers/src.*` and `tgt.*` are the same model), so a text gets the same ids on
    either side; its size is `src_vocab_size`, and `tgt_vocab_size` must equal it.
    """

    type: Literal["sentencepiece", "word", "char"] = "sentencepiece"
    model_type: Literal["unigram", "bpe"] = "unigram"
    src_vocab_size: int = 8000
    tgt_vocab_size: int = 8000
    character_coverage: float = 1.0
    lowercase: bool = False
    min_frequency: int = 1
    joint_vocab: bool = False

    def __post_init__(self) -> None:
        _check(self.src_vocab_size >= 8, "tokenizer.src_vocab_size", "must be at least 8")
        _check(self.tgt_vocab_size >= 8, "tokenizer.tgt_vocab_size", "must be at least 8")
        _check(
            _finite(self.character_coverage) and 0.98 <= self.character_coverage <= 1,
            "tokenizer.character_coverage",
            "must be in [0.98, 1], as SentencePiece requires (the share of characters it keeps: "
            f"1.0 for alphabetic languages, 0.9995 for Chinese or Japanese), got "
            f"{self.character_coverage!r}",
        )
        _check(
            self.min_frequency >= 1,
            "tokenizer.min_frequency",
            f"must be at least 1 (word and char tokenizers keep tokens seen this often), got "
            f"{self.min_frequency}",
        )
        _check(
            not self.joint_vocab or self.tgt_vocab_size == self.src_vocab_size,
            "tokenizer.tgt_vocab_size",
            f"must equal tokenizer.src_vocab_size ({self.src_vocab_size}) with joint_vocab: true "
            f"(one vocabulary for both sides), got {self.tgt_vocab_size}",
        )


@dataclass
class EncoderConfig:
    """A stack of recurrent layers of one kind, optionally bidirectional.

    `dropout` is applied between stacked layers. `recurrent_dropout` drops units of `h_{t-1}` with
    one mask per sequence (Gal & Ghahramani, 2016; Keras' own: one mask per gate), during
    training only. Its cost: `lstm` layers run it in their own loops (the four gates' recurrent
    products as one batched product; the flagship config with 0.2 on encoder and decoder trains
    at 0.91-0.95x the target tokens/s without it, side by side); `gru` layers run Keras' step
    loop with separate gate products (`implementation=1`); on a GPU it rules out cuDNN.
    """

    cell: CellKind = "lstm"
    num_layers: int = 1
    units: int = 256
    bidirectional: bool = False
    merge: MergeMode = "concat"
    activation: Activation = "tanh"
    recurrent_initializer: str = "orthogonal"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    def __post_init__(self) -> None:
        p = "model.encoder."
        _check_stack(self, p)
        _check(
            self.recurrent_initializer in RECURRENT_INITIALIZERS,
            p + "recurrent_initializer",
            f"invalid value {self.recurrent_initializer!r}; valid choices: "
            + ", ".join(RECURRENT_INITIALIZERS),
        )
        if self.cell != "rnn":
            _check(
                self.activation == "tanh",
                p + "activation",
                "only cell: rnn takes another activation than tanh",
            )
            _check(
                self.recurrent_initializer != "identity",
                p + "recurrent_initializer",
                "'identity' (IRNN) is only for cell: rnn",
            )

    @property
    def output_size(self) -> int:
        """Size of the encoder outputs and of its (merged) final states."""
        return output_size(self.units, self.bidirectional, self.merge)


@dataclass
class DecoderConfig:
    """A stack of GRU or LSTM layers started from the context vector.

    `attention` over the encoder outputs: `none`, `bahdanau` (additive; queried with the previous
    decoder state, as Bahdanau et al., 2015) or `luong` (multiplicative; queried with the new
    state, as Luong et al., 2015). JoeyNMT queries both kinds with the new state.
    `attention_score` is Luong's score, `general` (`h^T W e`) or `dot` (`h^T e`, needs encoder
    output size == `units`). `input_feeding` feeds the previous attentional vector back into the
    next step's input (Luong et al., 2015). Both are ignored without attention.
    `recurrent_dropout`: as in `EncoderConfig` (same cost). `recurrent_initializer`: as in
    `EncoderConfig` (`glorot_uniform_per_gate`: Glorot with one gate's fans, JoeyNMT's default).
    """

    cell: DecoderCellKind = "lstm"
    num_layers: int = 1
    units: int = 256
    dropout: float = 0.0
    attention: AttentionKind = "none"
    attention_score: LuongScore = "general"
    input_feeding: bool = True
    recurrent_dropout: float = 0.0
    recurrent_initializer: str = "orthogonal"

    def __post_init__(self) -> None:
        _check_stack(self, "model.decoder.")
        choices = [c for c in RECURRENT_INITIALIZERS if c != "identity"]
        _check(
            self.recurrent_initializer in choices,
            "model.decoder.recurrent_initializer",
            f"invalid value {self.recurrent_initializer!r}; valid choices: " + ", ".join(choices),
        )


@dataclass
class ModelConfig:
    """Embeddings, encoder, bridge and decoder.

    - `tied_softmax`: the output projection is the target embedding matrix transposed, plus its
      own bias (Press & Wolf, 2017); needs `model.decoder.units == model.embedding_dim`, as in
      JoeyNMT and OpenNMT-py (no extra linear layer).
    - `tied_embeddings`: one embedding matrix for source and target; needs one vocabulary
      (`tokenizer.joint_vocab`), checked when the config loads (and the sizes when the model is
      built).
    - `src_word_dropout`, `tgt_word_dropout`: during training, each source (target input) token's
      whole embedding is zeroed with this probability, the others scaled by `1 / (1 - p)`
      (Sennrich & Zhang, 2019; Nematus' `dropout_source`/`dropout_target`).
    - `embedding_initializer`: `uniform` (`U(-s, s)`, Keras' default with `s = 0.05`), `normal`
      (`N(0, s^2)`) or `glorot_uniform` (JoeyNMT's default), with `s = embedding_init_scale`.
    - `rnn_kernel_initializer`: the input kernels of the GRU/LSTM/Elman layers,
      `glorot_uniform` (Keras: fans of the whole `[in, gates * units]` kernel) or
      `glorot_uniform_per_gate` (fans of one gate's block, as JoeyNMT).
    - `forget_bias`: initial LSTM forget-gate bias (Keras 1; JoeyNMT's two biases add up to 2).
    """

    embedding_dim: int = 256
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    init_hidden: BridgeKind = "dense"
    embedding_dropout: float = 0.0
    output_dropout: float = 0.0
    tied_softmax: bool = False
    tied_embeddings: bool = False
    src_word_dropout: float = 0.0
    tgt_word_dropout: float = 0.0
    embedding_initializer: Literal["uniform", "normal", "glorot_uniform"] = "uniform"
    embedding_init_scale: float = 0.05
    rnn_kernel_initializer: Literal["glorot_uniform", "glorot_uniform_per_gate"] = "glorot_uniform"
    forget_bias: float = 1.0

    def __post_init__(self) -> None:
        enc, dec = self.encoder, self.decoder
        _check(self.embedding_dim >= 1, "model.embedding_dim", "must be at least 1")
        for key in ("embedding_dropout", "output_dropout", "src_word_dropout", "tgt_word_dropout"):
            _check(0.0 <= getattr(self, key) < 1.0, "model." + key, "must be in [0, 1)")
        _check(
            _finite(self.embedding_init_scale) and self.embedding_init_scale > 0,
            "model.embedding_init_scale",
            "must be a positive number",
        )
        _check(_finite(self.forget_bias), "model.forget_bias", "must be a finite number")
        if self.tied_softmax:
            _check(
                dec.units == self.embedding_dim,
                "model.tied_softmax",
                f"the output projection reads vectors of model.decoder.units ({dec.units}), so "
                f"tying it to the target embeddings needs model.embedding_dim == "
                f"model.decoder.units (embedding_dim is {self.embedding_dim})",
            )
        if dec.attention == "luong" and dec.attention_score == "dot":
            _check(
                enc.output_size == dec.units,
                "model.decoder.attention_score",
                f"'dot' scores h^T e, so the encoder output size ({enc.output_size}) must equal "
                f"model.decoder.units ({dec.units}); use 'general'",
            )
        if self.init_hidden == "last":
            _check(
                enc.output_size == dec.units,
                "model.init_hidden",
                f"'last' passes the encoder state unchanged, so encoder output size "
                f"({enc.output_size}) must equal model.decoder.units ({dec.units}); use 'dense' or 'zero'",
            )
            _check(
                not (enc.cell in ("gru", "rnn") and dec.cell == "lstm"),
                "model.init_hidden",
                f"'last' cannot start an LSTM decoder (h, c) from a {enc.cell} encoder state (h); "
                "use 'dense' or 'zero'",
            )


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
    # the data may be ordered: the bundled dictionary phrases come sorted after the sentences) up
    # to 1,000,000 pairs; a larger corpus gets a buffer of 1,000,000, filled from its record
    # shards read in a seeded order, several at a time.
    shuffle_buffer: int | None = None
    # Scale-out (README, "Training on several devices"). `distribute`: `none` (one device),
    # `mirrored` (tf.distribute.MirroredStrategy over this machine's GPUs, or its CPU split into
    # `cpu_devices` logical devices), `multi_worker` (MultiWorkerMirroredStrategy from TF_CONFIG).
    # `batch_tokens` is the batch of one replica; `learning_rate_scaling: linear` multiplies the
    # learning rate by the number of replicas times `accumulate_steps`, `keep` leaves it.
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    cpu_devices: int | None = None
    learning_rate_scaling: Literal["keep", "linear"] = "keep"
    # Keras dtype policies; softmax, attention scores and the loss stay float32, and
    # mixed_float16 scales the loss. `auto`: mixed_bfloat16 on a CPU with native bfloat16
    # instructions (and no GPU), float32 elsewhere (translator/training/precision.py).
    mixed_precision: Literal["auto", "none", "mixed_float16", "mixed_bfloat16"] = "auto"
    # Gradients of this many batches are averaged before one optimizer update.
    accumulate_steps: int = 1
    # Checkpoint averaging: N >= 2 keeps each epoch's weights (the last N and the best N by
    # validation BLEU, in checkpoints/) and tries the mean of the last N as the best model; 0: off.
    average_checkpoints: int = 0
    # Learning-rate schedule (translator/training/schedule.py): linear warm-up over
    # `warmup_steps` updates (0: none), then the rate is multiplied by `lr_decay_factor` (1: never)
    # after `lr_decay_patience` epochs without a gain in `lr_decay_metric` (validation `loss` or
    # `bleu`), down to `min_learning_rate`.
    warmup_steps: int = 0
    lr_decay_factor: float = 1.0
    lr_decay_patience: int = 2
    lr_decay_metric: Literal["loss", "bleu"] = "loss"
    min_learning_rate: float = 0.0
    # Beam size of the validation BLEU that selects the best model (1: greedy, the fastest).
    valid_beam_size: int = 1
    # Subword sampling of the training pairs, drawn afresh each time a pair is read (inside
    # tf.data; validation and decoding keep the best segmentation). `sampling_alpha` 0: off. With
    # a SentencePiece unigram model: subword regularisation (Kudo, 2018), alpha the smoothing
    # exponent (smaller: more varied) over the `sampling_nbest_size` best segmentations (-1: all);
    # with a BPE model: BPE-dropout (Provilkov et al., 2020), alpha the probability of skipping a
    # merge (nbest_size does not apply). `sampling_sides`: `both`, `src` or `tgt`. Not seeded.
    sampling_alpha: float = 0.0
    sampling_nbest_size: int = -1
    sampling_sides: Literal["both", "src", "tgt"] = "both"

    def __post_init__(self) -> None:
        p = "train."
        _check(
            _finite(self.sampling_alpha) and self.sampling_alpha >= 0,
            p + "sampling_alpha",
            f"must be a number >= 0 (0: no subword sampling), got {self.sampling_alpha!r}",
        )
        _check(
            self.sampling_nbest_size == -1 or 2 <= self.sampling_nbest_size <= 512,
            p + "sampling_nbest_size",
            "must be -1 (sample from all segmentations) or in [2, 512] (from that many best), "
            f"got {self.sampling_nbest_size!r}; turn sampling off with train.sampling_alpha: 0",
        )
        _check(self.warmup_steps >= 0, p + "warmup_steps", "must be 0 or more")
        _check(
            _finite(self.lr_decay_factor) and 0 < self.lr_decay_factor <= 1,
            p + "lr_decay_factor",
            "must be in (0, 1] (1: no decay)",
        )
        _check(self.lr_decay_patience >= 1, p + "lr_decay_patience", "must be at least 1")
        _check(
            _finite(self.min_learning_rate) and self.min_learning_rate >= 0,
            p + "min_learning_rate",
            "must be a number >= 0",
        )
        _check(
            1 <= self.valid_beam_size <= MAX_BEAM_SIZE,
            p + "valid_beam_size",
            f"must be from 1 to {MAX_BEAM_SIZE}",
        )
        _check(self.epochs >= 1, p + "epochs", "must be at least 1")
        _check(0 <= self.seed < 2**32, p + "seed", f"must be in [0, 2**32), got {self.seed}")
        _check(self.batch_tokens >= 1, p + "batch_tokens", "must be positive")
        _check(
            _finite(self.learning_rate) and self.learning_rate > 0,
            p + "learning_rate",
            "must be positive",
        )
        _check(
            self.min_learning_rate <= self.learning_rate,
            p + "min_learning_rate",
            f"must not exceed train.learning_rate ({self.learning_rate}): the rate only decays "
            f"down to it, got {self.min_learning_rate}",
        )
        _check(
            self.shuffle_buffer is None or self.shuffle_buffer >= 1,
            p + "shuffle_buffer",
            "must be at least 1 (or null: the whole training set)",
        )
        _check(0.0 <= self.label_smoothing < 1.0, p + "label_smoothing", "must be in [0, 1)")
        _check(self.max_batch_size >= 1, p + "max_batch_size", "must be at least 1")
        _check(self.patience >= 1, p + "patience", "must be at least 1")
        _check(_finite(self.clip_norm) and self.clip_norm >= 0, p + "clip_norm", "must be >= 0")
        _check(
            self.max_minutes is None or (_finite(self.max_minutes) and self.max_minutes > 0),
            p + "max_minutes",
            "must be a positive number of minutes (or null: no time budget)",
        )
        for key in ("steps_per_epoch", "valid_bleu_pairs"):
            value = getattr(self, key)
            _check(value is None or value >= 1, p + key, "must be at least 1 (or null)")
        _check(self.accumulate_steps >= 1, p + "accumulate_steps", "must be at least 1")
        _check(
            self.accumulate_steps == 1 or self.distribute == "none",
            p + "accumulate_steps",
            "must be 1 with train.distribute: mirrored or multi_worker (Keras 3.15.1 applies "
            "accumulated gradients inside a conditional, where tf.distribute cannot sum across "
            "replicas); more replicas or a larger train.batch_tokens give the larger batch",
        )
        _check(
            self.cpu_devices is None or self.cpu_devices >= 1,
            p + "cpu_devices",
            "must be at least 1 (or null: the CPU is one device)",
        )
        _check(
            self.cpu_devices is None or self.cpu_devices == 1 or self.distribute == "mirrored",
            p + "cpu_devices",
            f"is {self.cpu_devices}, which only train.distribute: mirrored uses (one replica on "
            f"each logical CPU); with train.distribute: {self.distribute} leave it null",
        )
        _check(
            self.average_checkpoints == 0 or self.average_checkpoints >= 2,
            p + "average_checkpoints",
            f"must be 0 (off) or at least 2 (the epochs averaged), got {self.average_checkpoints}",
        )


# Bounds of the decoding options (see DecodeConfig.__post_init__).
MAX_LENGTH_PENALTY = 10.0
MAX_WORD_REWARD = 100.0
MAX_OUTPUT_RATIO = 10.0
MAX_OUTPUT_EXTRA = 1000
# Each sentence steps beam_size rows through the model (beam 10**6 ran out of memory after a
# minute); far past any useful beam, and still within a CPU's memory for a batch of sentences.
MAX_BEAM_SIZE = 1000
MIN_TEMPERATURE = 1e-6


@dataclass
class DecodeConfig:
    """Decoding settings for translation and evaluation; every decoding option is checked here,
    whether it comes from a config file, the command line or the Python API (via
    `dataclasses.replace`)."""

    beam_size: int = 1
    n_best: int = 1
    length_penalty: float = 0.0
    word_reward: float = 0.0
    max_output_ratio: float = 1.5
    max_output_extra: int = 10
    min_output_length: int = 0
    batch_size: int = 64
    # Random sampling instead of search (OpenNMT-tf's options; e.g. for back-translation):
    # `sampling_topk` 1 is greedy search (no sampling), 0 samples from the whole distribution,
    # K > 1 from the K most likely tokens; log-probabilities are divided by the temperature.
    sampling_topk: int = 1
    sampling_temperature: float = 1.0
    # Greedy and beam search as XLA-compiled loops: faster per sentence (the same outputs on the
    # test split), but each new batch shape compiles first (seconds); sources are padded to a
    # multiple of 8 tokens to bound the shapes. For large inputs (evaluation, files, servers).
    xla: bool = False
    # Batches (greedy search: windows) decoded at once, each in a thread of its own. A search
    # step is many small operations, run one after another, which leave the second core of a
    # 2-core CPU mostly idle; two batches at once keep both busy. The outputs do not depend on
    # it. 1: one batch at a time.
    workers: int = 2

    def __post_init__(self) -> None:
        p = "decode."
        _check(isinstance(self.xla, bool), p + "xla", f"expected true or false, got {self.xla!r}")
        integers = (
            "beam_size",
            "n_best",
            "batch_size",
            "max_output_extra",
            "min_output_length",
            "workers",
        )
        for key in (*integers, "sampling_topk"):
            value = getattr(self, key)
            _check(
                isinstance(value, numbers.Integral) and not isinstance(value, bool),
                p + key,
                f"expected an integer, got {value!r}",
            )
        _check(
            1 <= self.beam_size <= MAX_BEAM_SIZE,
            p + "beam_size",
            f"must be from 1 to {MAX_BEAM_SIZE} (NMT uses 4-12), got {self.beam_size!r}",
        )
        _check(self.n_best >= 1, p + "n_best", "must be at least 1")
        _check(
            self.n_best <= self.beam_size,
            p + "n_best",
            f"must not exceed decode.beam_size ({self.beam_size})",
        )
        # The bounds keep every score finite in float32 (search computes in float32: a word
        # reward of 1e39 or a penalty exponent of 1e3 made every score infinite) and every
        # output buffer of a sane size; useful values lie far inside them.
        _check(
            _finite(self.length_penalty) and 0 <= self.length_penalty <= MAX_LENGTH_PENALTY,
            p + "length_penalty",
            f"must be a number from 0 to {MAX_LENGTH_PENALTY} (0: none; GNMT uses 0.6-1.0), "
            f"got {self.length_penalty!r}",
        )
        _check(
            _finite(self.word_reward) and abs(self.word_reward) <= MAX_WORD_REWARD,
            p + "word_reward",
            f"must be a number from -{MAX_WORD_REWARD} to {MAX_WORD_REWARD} (a bonus per output "
            f"token in log-probability units), got {self.word_reward!r}",
        )
        _check(
            _finite(self.max_output_ratio) and 0 < self.max_output_ratio <= MAX_OUTPUT_RATIO,
            p + "max_output_ratio",
            f"must be a number above 0 and at most {MAX_OUTPUT_RATIO} (output tokens per source "
            f"token), got {self.max_output_ratio!r}",
        )
        _check(
            0 <= self.max_output_extra <= MAX_OUTPUT_EXTRA,
            p + "max_output_extra",
            f"must be from 0 to {MAX_OUTPUT_EXTRA}, got {self.max_output_extra!r}",
        )
        _check(self.min_output_length >= 0, p + "min_output_length", "must be 0 or more")
        _check(self.batch_size >= 1, p + "batch_size", "must be at least 1")
        _check(self.workers >= 1, p + "workers", "must be at least 1 (1: one batch at a time)")
        _check(
            self.sampling_topk >= 0,
            p + "sampling_topk",
            "must be 0 (the whole distribution), 1 (greedy, no sampling) or K > 1 (the K most "
            f"likely tokens), got {self.sampling_topk!r}",
        )
        _check(
            _finite(self.sampling_temperature)
            and MIN_TEMPERATURE <= self.sampling_temperature <= 1 / MIN_TEMPERATURE,
            p + "sampling_temperature",
            f"must be a number from {MIN_TEMPERATURE:g} to {1 / MIN_TEMPERATURE:g} (1: the "
            f"model's distribution), got {self.sampling_temperature!r}",
        )
        _check(
            self.sampling_topk == 1 or self.beam_size == 1,
            p + "sampling_topk",
            f"sampling (decode.sampling_topk {self.sampling_topk}) cannot be combined with beam "
            f"search (decode.beam_size {self.beam_size}); set decode.beam_size: 1 to sample, or "
            "decode.sampling_topk: 1 to search",
        )

    def with_overrides(self, **options: Any) -> DecodeConfig:
        """These settings with the given options (None: keep the setting), validated.

        Asking for one kind of decoding drops the other kind these settings chose: an option
        `sampling_topk` != 1 without `beam_size` also sets `beam_size` and `n_best` to 1, and
        `beam_size` > 1 without `sampling_topk` sets `sampling_topk` to 1. So a run configured
        for beam search samples when asked to, and the reverse; both asked at once is an error.
        """
        given = {k: v for k, v in options.items() if v is not None}
        if given.get("sampling_topk", 1) != 1 and "beam_size" not in given:
            given.update(beam_size=1, n_best=given.get("n_best", 1))
        beam = given.get("beam_size", 1)
        if isinstance(beam, numbers.Integral) and beam > 1 and "sampling_topk" not in given:
            given["sampling_topk"] = 1
        return dataclasses.replace(self, **given)


@dataclass
class EvalConfig:
    """Evaluation of the test split."""

    metrics: list[str] = field(default_factory=lambda: ["bleu", "chrf"])

    def __post_init__(self) -> None:
        _check(
            len(self.metrics) > 0,
            "eval.metrics",
            f"must name at least one metric; valid choices: {', '.join(METRICS)}",
        )
        duplicated = sorted({m for m in self.metrics if self.metrics.count(m) > 1})
        _check(not duplicated, "eval.metrics", f"{', '.join(duplicated)} given more than once")
        for m in self.metrics:
            _check(
                m in METRICS,
                "eval.metrics",
                f"invalid metric {m!r}; valid choices: {', '.join(METRICS)}",
            )


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

    def __post_init__(self) -> None:
        name = self.name
        _check(isinstance(name, str) and name.strip() != "", "name", "must be a non-empty string")
        parts = Path(name).parts
        _check(
            not Path(name).is_absolute() and ".." not in parts and not name.startswith("~"),
            "name",
            f"{name!r} would put the run directory outside runs/; use a plain name such as "
            "'de-en-lstm' (or give --run-dir explicitly)",
        )
        tok, train = self.tokenizer, self.train
        _check(
            not self.model.tied_embeddings or tok.joint_vocab,
            "model.tied_embeddings",
            "needs tokenizer.joint_vocab: true (one vocabulary for both sides); with two "
            "tokenizers, source piece k and target piece k are unrelated and would share a vector",
        )
        if train.sampling_alpha > 0:  # subword sampling: what the tokenizer allows
            _check(
                tok.type == "sentencepiece",
                "train.sampling_alpha",
                f"subword sampling needs tokenizer.type: sentencepiece, not {tok.type!r}; "
                "set train.sampling_alpha: 0",
            )
            if tok.model_type == "bpe":
                _check(
                    train.sampling_alpha < 1,
                    "train.sampling_alpha",
                    "is the BPE-dropout probability with tokenizer.model_type: bpe; must be "
                    f"below 1, got {train.sampling_alpha}",
                )
                _check(
                    train.sampling_nbest_size == -1,
                    "train.sampling_nbest_size",
                    "applies to unigram models only (BPE-dropout samples with "
                    "train.sampling_alpha alone); leave it at -1 with tokenizer.model_type: bpe",
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        return dataclasses.asdict(getattr(self, name))


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
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
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
    try:
        return cls(**kwargs)
    except TypeError as e:  # a section's __post_init__ compared a value of the wrong type
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from a plain mapping."""
    if not isinstance(values, dict):
        raise ConfigError("a config must be a mapping of sections")
    return _build(Config, values)


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    """A validated :class:`ModelConfig` from the `model` section as a mapping (keys missing in
    models saved by older versions take their defaults)."""
    return _build(ModelConfig, dict(values), "model")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (the value is YAML, so `3`, `0.5`, `true` and `[a, b]` work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    if not all(path):
        raise ConfigError(f"override {text!r}: the key has an empty part; write section.key=value")
    for part, what in ((key, "key"), (raw, "value")):
        problem = describe_unicode_problem(part)
        if problem is not None:  # a byte that is not UTF-8, decoded with surrogateescape
            raise ConfigError(
                f"override '{shown(text)}': the {what} is not valid UTF-8 ({problem}); give "
                "--set values in UTF-8"
            )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot parse value: {e}") from None
    if isinstance(value, dict) and not raw.strip().startswith("{"):
        value = raw.strip()  # `tfds:` or `a: b` is a string here (a mapping is written {k: v})
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently, so an edit above an old setting would not take effect)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports an unhashable key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (line {seen[key]} and line {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file, apply overrides and validate.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings applied after loading.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a YAML config file, e.g. configs/tiny.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        column = start - data.rfind(b"\n", 0, start)
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[start]:02x} at column {column}); save "
            "the config as UTF-8"
        ) from None
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)  # errors point at the file, not "<unicode string>"
        try:
            values = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if not values:
        raise ConfigError(
            f"{path}: empty config; a config sets at least one section (see configs/)"
        )
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
