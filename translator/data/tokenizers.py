"""Tokenizers: SentencePiece subwords, words and characters, with one interface.

All tokenizers share the special ids: 0 padding, 1 unknown, 2 begin-of-sentence, 3 end-of-sentence.
`encode` returns ids without BOS/EOS; `decode` drops special ids and detokenises.

A joint vocabulary is one tokenizer trained on source and target text together and saved for
both sides; `same_as` tells two tokenizers that encode alike. :class:`SubwordSampler` segments
SentencePiece ids afresh inside a TensorFlow graph (subword regularisation, BPE-dropout).
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from translator.io import ArtifactError, atomic_path, atomic_write_json

if TYPE_CHECKING:
    import tensorflow as tf

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
# SentencePiece trains on at most this many sentences (a seeded uniform sample of a larger
# training split), which bounds its memory; a split of at most this many trains on all of them.
SENTENCEPIECE_MAX_SENTENCES = 2_000_000


class TokenizerTrainingError(ValueError):
    """SentencePiece refused to train with the settings it was given.

    Attributes:
        option: the setting at fault: `vocab_size`, `character_coverage`, or None (another).
        problem: `too_small` or `too_large` (the vocabulary size for this corpus), or None.
        limit: the least (`too_small`) or greatest (`too_large`) vocabulary size SentencePiece
            accepts for this corpus, if it said.
        reason: SentencePiece's own words, without its source location.
    """

    def __init__(
        self, reason: str, option: str | None, problem: str | None, limit: int | None
    ) -> None:
        self.reason, self.option, self.problem, self.limit = reason, option, problem, limit
        super().__init__(f"SentencePiece could not train a tokenizer: {reason}")


# SentencePiece's errors: `INTERNAL: src/trainer_interface.cc(638) [condition] message`.
_SP_LOCATION = re.compile(r"^\s*[A-Z_]+:\s*(?:\S+\(\d+\)\s*)?(?:\[[^\]]*\]\s*)?")


def _training_error(e: RuntimeError) -> TokenizerTrainingError:
    """SentencePiece's RuntimeError while training as a :class:`TokenizerTrainingError`."""
    reason = _SP_LOCATION.sub("", str(e).strip()).strip() or str(e).strip()
    if m := re.search(r"too high \((\d+)\)\. Please set it to a value <= (\d+)", reason):
        return TokenizerTrainingError(reason, "vocab_size", "too_large", int(m.group(2)))
    if m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", reason):
        return TokenizerTrainingError(reason, "vocab_size", "too_small", int(m.group(2)))
    if "larger than the number of meta pieces" in reason:
        return TokenizerTrainingError(reason, "vocab_size", "too_small", len(SPECIALS) + 1)
    if "character_coverage" in reason and "required_chars" not in reason:
        return TokenizerTrainingError(reason, "character_coverage", None, None)
    if "vocab_size" in reason:
        return TokenizerTrainingError(reason, "vocab_size", None, None)
    return TokenizerTrainingError(reason, None, None, None)


class Tokenizer:
    """Base class: text <-> ids."""

    type_name = ""

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def id_to_piece(self, idx: int) -> str:
        raise NotImplementedError

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Readable tokens for ids (special ids included), e.g. for alignment plots."""
        return [self.id_to_piece(int(i)) for i in ids]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def identity(self) -> tuple:
        """What decides how text is encoded: kind, model or vocabulary, lowercasing."""
        raise NotImplementedError

    def same_as(self, other: Tokenizer) -> bool:
        """Whether `other` encodes every text to the same ids (the same kind, model or vocabulary
        and lowercasing), e.g. the two sides of a joint vocabulary. Compares the models, encodes
        nothing."""
        return self.identity() == other.identity()

    def save(self, path: str | Path) -> None:
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece (unigram or BPE) subword model."""

    type_name = "sentencepiece"

    def __init__(self, model_proto: bytes, lowercase: bool = False):
        import sentencepiece as spm

        if not model_proto:
            # SentencePieceProcessor(model_proto=b"") loads nothing and fails at the first encode.
            raise ValueError("the model is empty (truncated?)")
        self._proto = model_proto
        self.lowercase = lowercase
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(model_proto)  # RuntimeError for a damaged model

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        lowercase: bool = False,
        seed: int = 1,
        input_sentence_size: int = 0,
    ) -> SentencePieceTokenizer:
        """Train on `texts`, streamed (SentencePiece reads them one at a time).

        `input_sentence_size` > 0 trains on a uniform sample of that many sentences (reservoir
        sampling, seeded with `seed`) and so bounds memory; 0 takes them all. (0 is not passed
        on: the model records its training options, so it stays byte-identical to a model
        trained without the option.)
        """
        import io

        import sentencepiece as spm

        if lowercase:
            texts = (t.lower() for t in texts)
        sample = {}
        if input_sentence_size > 0:
            spm.set_random_generator_seed(seed)
            sample = {"input_sentence_size": input_sentence_size, "shuffle_input_sentence": True}
        buf = io.BytesIO()
        # SentencePiece turns an exception of the iterator (a CorpusError, Ctrl-C) into its own
        # RuntimeError; the original is kept and raised instead.
        failed: list[BaseException] = []

        def sentences() -> Iterator[str]:
            try:
                yield from texts
            except GeneratorExit:
                raise
            except BaseException as e:
                failed.append(e)
                raise

        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences(),
                model_writer=buf,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                bos_id=BOS_ID,
                eos_id=EOS_ID,
                hard_vocab_limit=False,
                num_threads=2,
                minloglevel=2,
                **sample,
            )
        except RuntimeError as e:  # SentencePiece's settings checks (and its other failures)
            if failed:
                raise failed[0] from None
            raise _training_error(e) from None
        return cls(buf.getvalue(), lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what the `.model` file holds)."""
        return self._proto

    @property
    def model_type(self) -> str:
        """The SentencePiece algorithm the model was trained with: `unigram` or `bpe` (or
        `word`, `char` for models made elsewhere)."""
        from sentencepiece import sentencepiece_model_pb2

        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(self._proto)
        return sentencepiece_model_pb2.TrainerSpec.ModelType.Name(
            model.trainer_spec.model_type
        ).lower()

    def identity(self) -> tuple:
        return (self.type_name, self._proto, self.lowercase)

    def encode(self, text: str) -> list[int]:
        if self.lowercase:
            text = text.lower()
        return self._sp.encode(text)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        return self._sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) > EOS_ID])

    def id_to_piece(self, idx: int) -> str:
        return self._sp.id_to_piece(int(idx))

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_bytes(self._proto)
        atomic_write_json(
            Path(str(path) + ".json"), {"type": self.type_name, "lowercase": self.lowercase}
        )

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        meta_path = Path(str(path) + ".json")
        meta = {}
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                raise ValueError(f"{meta_path} is not readable JSON: {e}") from None
            if not isinstance(meta, dict) or not isinstance(meta.get("lowercase", False), bool):
                raise ValueError(f"{meta_path} is not a SentencePiece tokenizer's settings")
        return cls(Path(path).read_bytes(), lowercase=meta.get("lowercase", False))


_WORD_RE = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)
_NO_SPACE_BEFORE = set(".,!?;:%)]}»”’'")
_NO_SPACE_AFTER = set("([{«„“‘")


class _VocabTokenizer(Tokenizer):
    """Shared code of the word and character tokenizers: a frequency-ranked vocabulary."""

    def __init__(self, vocab: list[str], lowercase: bool = False):
        self.vocab = list(vocab)
        self.lowercase = lowercase
        self._index = {tok: i for i, tok in enumerate(self.vocab)}

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, tokens: list[str]) -> str:
        raise NotImplementedError

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 1,
        lowercase: bool = False,
        **_,
    ) -> _VocabTokenizer:
        """Count tokens over `texts`, streamed (memory: the distinct tokens)."""
        probe = cls(list(SPECIALS), lowercase=lowercase)
        counts: collections.Counter[str] = collections.Counter()
        for t in texts:
            counts.update(probe.split(t))
        ranked = sorted((c, tok) for tok, c in counts.items() if c >= min_frequency)
        ranked.sort(key=lambda ct: (-ct[0], ct[1]))
        vocab = list(SPECIALS) + [tok for _, tok in ranked[: max(0, vocab_size - len(SPECIALS))]]
        return cls(vocab, lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def identity(self) -> tuple:
        return (self.type_name, tuple(self.vocab), self.lowercase)

    def encode(self, text: str) -> list[int]:
        return [self._index.get(tok, UNK_ID) for tok in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.join([self.vocab[int(i)] for i in ids if int(i) > EOS_ID or int(i) == UNK_ID])

    def id_to_piece(self, idx: int) -> str:
        return self.vocab[int(idx)]

    def save(self, path: str | Path) -> None:
        atomic_write_json(
            path, {"type": self.type_name, "lowercase": self.lowercase, "vocab": self.vocab}
        )

    @classmethod
    def load(cls, path: str | Path) -> _VocabTokenizer:
        """Load a saved vocabulary; ValueError saying what is wrong if it is not one of `cls`'s
        (valid JSON with another shape would otherwise load and fail at translation time)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("vocab"), list):
            raise ValueError("no vocabulary list (not a word or char tokenizer file)")
        if data.get("type", cls.type_name) != cls.type_name:
            raise ValueError(
                f"it holds a {data['type']!r} tokenizer, the run's tokenizer.type is "
                f"{cls.type_name!r}"
            )
        vocab = data["vocab"]
        if vocab[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(f"the vocabulary does not start with {', '.join(SPECIALS)}")
        if not all(isinstance(tok, str) for tok in vocab) or len(set(vocab)) != len(vocab):
            raise ValueError("the vocabulary holds entries that are not distinct strings")
        if not isinstance(data.get("lowercase", False), bool):
            raise ValueError("'lowercase' is not true or false")
        return cls(vocab, lowercase=data.get("lowercase", False))


class WordTokenizer(_VocabTokenizer):
    """Words and punctuation marks; out-of-vocabulary words become `<unk>`."""

    type_name = "word"

    def split(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return _WORD_RE.findall(text)

    def join(self, tokens: list[str]) -> str:
        out = ""
        for tok in tokens:
            if out and not (tok in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER):
                out += " "
            out += tok
        return out


class CharTokenizer(_VocabTokenizer):
    """Single characters (spaces included)."""

    type_name = "char"

    def split(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def join(self, tokens: list[str]) -> str:
        return "".join(t if t != SPECIALS[UNK_ID] else "?" for t in tokens)


TOKENIZERS: dict[str, type[Tokenizer]] = {
    "sentencepiece": SentencePieceTokenizer,
    "word": WordTokenizer,
    "char": CharTokenizer,
}
FILE_NAMES = {"sentencepiece": "{side}.model", "word": "{side}.json", "char": "{side}.json"}


def train_tokenizer(
    kind: str,
    texts: Iterable[str],
    vocab_size: int,
    sentence_count: int | None = None,
    **options,
) -> Tokenizer:
    """Train a tokenizer of `kind` (sentencepiece, word, char) on `texts`, streamed.

    `sentence_count` (how many `texts` yields, if known): SentencePiece samples
    `SENTENCEPIECE_MAX_SENTENCES` of more than that many sentences; with fewer (or None) it
    trains on all of them, exactly as before the cap existed.
    """
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer type {kind!r}; valid choices: {', '.join(TOKENIZERS)}")
    cls = TOKENIZERS[kind]
    if kind == "sentencepiece":
        cap = options.get("max_sentences", SENTENCEPIECE_MAX_SENTENCES)
        return cls.train(
            texts,
            vocab_size,
            model_type=options.get("model_type", "unigram"),
            character_coverage=options.get("character_coverage", 1.0),
            lowercase=options.get("lowercase", False),
            seed=options.get("seed", 1),
            input_sentence_size=cap if sentence_count is not None and sentence_count > cap else 0,
        )
    return cls.train(
        texts,
        vocab_size,
        min_frequency=options.get("min_frequency", 1),
        lowercase=options.get("lowercase", False),
    )


def tokenizer_path(directory: str | Path, kind: str, side: str) -> Path:
    """Where the `side` ('src' or 'tgt') tokenizer of `kind` lives inside `directory`."""
    return Path(directory) / FILE_NAMES[kind].format(side=side)


def save_tokenizer(tok: Tokenizer, directory: str | Path, side: str) -> Path:
    path = tokenizer_path(directory, tok.type_name, side)
    tok.save(path)
    return path


def tokenizer_digest(tok: Tokenizer) -> str:
    """What makes two tokenizers encode alike (kind, SentencePiece model or vocabulary,
    lowercasing), as a short hex digest: equal digests, equal encodings."""
    import hashlib

    model = getattr(tok, "_proto", None)
    if model is None:
        model = json.dumps(list(getattr(tok, "vocab", ())), ensure_ascii=False).encode("utf-8")
    h = hashlib.sha256(f"{tok.type_name}\0{getattr(tok, 'lowercase', False)}\0".encode())
    h.update(model)
    return h.hexdigest()[:16]


def load_tokenizer(directory: str | Path, kind: str, side: str) -> Tokenizer:
    """Load the `side` tokenizer of `kind` from `directory`."""
    path = tokenizer_path(directory, kind, side)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path}; run the `tokenize` stage first")
    try:
        return TOKENIZERS[kind].load(path)
    except Exception as e:  # SentencePiece, JSON and type errors all mean "not a tokenizer"
        raise ArtifactError(
            f"{path} is not a readable {kind} tokenizer ({type(e).__name__}: "
            f"{str(e).strip()[:200]}); run the tokenize stage again (translator tokenize CONFIG "
            "--run-dir RUN_DIR --force), which also retrains the model"
        ) from None


SAMPLING_SIDES = ("both", "src", "tgt")
_SAMPLER_IDS = itertools.count()  # distinct in-graph resource names, one per sampler


class SubwordSampler:
    """Segments SentencePiece ids afresh inside a TensorFlow graph (e.g. a tf.data map).

    The ids (the best segmentation, as the training records hold them) are detokenised and
    tokenised again by tensorflow-text with sampling, so each call draws a new segmentation of
    the same text:

    - a unigram model samples from its `nbest_size` best segmentations (-1: from all of them,
      by forward-filtering backward-sampling over the lattice) with probabilities proportional
      to P(x)^alpha: subword regularisation (Kudo, 2018); smaller alpha, more varied segmentations;
    - a BPE model skips each merge with probability `alpha`: BPE-dropout (Provilkov et al.,
      2020); SentencePiece ignores `nbest_size` there.

    With `alpha` 0 it gives the best segmentation again: the ids themselves, but for `<unk>`
    (it comes back from its surface ` ⁇ `) and for the rare segmentations that score exactly
    alike, a tie tensorflow-text's SentencePiece may break the other way. The draws are not
    seeded: tensorflow-text samples with SentencePiece's own random generator (one Mersenne
    twister per thread, seeded from `std::random_device`), which takes no seed.

    Args:
        tokenizer: a :class:`SentencePieceTokenizer` (its lowercasing is already in the ids).
        alpha: unigram: the smoothing exponent (> 0); BPE: the dropout probability, in [0, 1).
        nbest_size: unigram: sample from this many best segmentations (>= 2), or -1 for all.
        name: the name of the in-graph tokenizer's model resource; give each sampler its own
            (tensorflow-text shares model resources by name; see `translator.export`).

    Call arguments:
        ids: int32 RaggedTensor `[B, (T)]`, token ids without BOS/EOS.

    Returns:
        int32 RaggedTensor `[B, (T')]`: the same B texts, segmented afresh.

    Example:
        >>> sampler = SubwordSampler(tok, alpha=0.1, name="src_subword_sampler")
        >>> sampler(tf.ragged.constant([tok.encode("Das Haus.")]))  # a new segmentation each call
    """

    def __init__(
        self,
        tokenizer: SentencePieceTokenizer,
        alpha: float,
        nbest_size: int = -1,
        name: str = "subword_sampler",
    ):
        import tensorflow as tf
        import tensorflow_text as tf_text

        if not isinstance(tokenizer, SentencePieceTokenizer):
            raise ValueError(
                f"subword sampling needs a SentencePiece tokenizer, not a {tokenizer.type_name} "
                "tokenizer"
            )
        self.model_type = tokenizer.model_type
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(
                f"subword sampling needs a unigram or BPE model, not {self.model_type}"
            )
        if not math.isfinite(alpha) or alpha < 0 or (self.model_type == "bpe" and alpha >= 1):
            limits = "in [0, 1)" if self.model_type == "bpe" else "a number >= 0"
            raise ValueError(f"alpha must be {limits} for a {self.model_type} model, got {alpha}")
        if self.model_type == "unigram" and not (nbest_size == -1 or 2 <= nbest_size <= 512):
            raise ValueError(f"nbest_size must be -1 (all) or in [2, 512], got {nbest_size}")
        self.alpha = float(alpha)
        # tensorflow-text samples only when nbest_size is neither 0 nor 1 (SentencePiece's "no
        # sampling"); a BPE model then drops merges whatever the value.
        if alpha == 0:
            self.nbest_size = 0
        else:
            self.nbest_size = -1 if self.model_type == "bpe" else nbest_size
        self._tokenizer = tf_text.SentencepieceTokenizer(
            model=tokenizer.model_proto,
            out_type=tf.int32,
            nbest_size=self.nbest_size,
            alpha=self.alpha,
            name=name,
        )

    def __call__(self, ids: tf.RaggedTensor) -> tf.RaggedTensor:
        return self._tokenizer.tokenize(self._tokenizer.detokenize(ids))

    def describe(self) -> str:
        """What is sampled, for a log line: `unigram sampling, alpha 0.1 over all segmentations`."""
        if self.alpha == 0:
            return "best segmentation"
        if self.model_type == "bpe":
            return f"BPE-dropout {self.alpha:g}"
        n = "all segmentations" if self.nbest_size < 0 else f"{self.nbest_size} best"
        return f"unigram sampling, alpha {self.alpha:g} over {n}"


class PairSampler:
    """Segments training pairs afresh inside a TensorFlow graph: a :class:`SubwordSampler` per
    side that is sampled, the other side's ids unchanged.

    Call arguments:
        src: int32 RaggedTensor `[B, (S)]`, source ids without BOS/EOS.
        tgt: int32 RaggedTensor `[B, (T)]`, target ids without BOS/EOS.

    Returns:
        `(src, tgt)` RaggedTensors `[B, (S')]`, `[B, (T')]`: the same pairs, segmented afresh.
    """

    def __init__(self, src: SubwordSampler | None, tgt: SubwordSampler | None):
        if src is None and tgt is None:
            raise ValueError("a pair sampler samples at least one side")
        self.src, self.tgt = src, tgt

    def __call__(
        self, src: tf.RaggedTensor, tgt: tf.RaggedTensor
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        return (
            src if self.src is None else self.src(src),
            tgt if self.tgt is None else self.tgt(tgt),
        )

    def describe(self) -> str:
        """What is sampled on which side, for a log line."""
        samplers = [s for s in (self.src, self.tgt) if s is not None]
        sides = "source and target" if len(samplers) == 2 else "source" if self.src else "target"
        return f"{samplers[0].describe()} of the {sides} (not seeded)"


def pair_sampler(
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    alpha: float,
    nbest_size: int = -1,
    sides: str = "both",
) -> PairSampler | None:
    """Subword sampling of training pairs (see :class:`SubwordSampler`), or None when `alpha` is
    0 (off: the training data keeps its best segmentation, batch for batch as without sampling).

    Args:
        src_tok, tgt_tok: the run's SentencePiece tokenizers.
        alpha: unigram smoothing exponent or BPE-dropout probability; 0: off.
        nbest_size: unigram: the segmentations sampled from (-1: all).
        sides: `both`, `src` or `tgt`: which side is sampled.
    """
    if sides not in SAMPLING_SIDES:
        raise ValueError(f"sides={sides!r}; valid choices: {', '.join(SAMPLING_SIDES)}")
    if alpha == 0:
        return None

    def sampler(tok: Tokenizer, side: str) -> SubwordSampler | None:
        if sides not in ("both", side):
            return None
        name = f"{side}_subword_sampler_{next(_SAMPLER_IDS)}"
        return SubwordSampler(tok, alpha, nbest_size, name=name)

    return PairSampler(sampler(src_tok, "src"), sampler(tgt_tok, "tgt"))
