"""Tokenizers: SentencePiece subwords, words and characters, with one interface.

All tokenizers share the special ids: 0 padding, 1 unknown, 2 begin-of-sentence, 3 end-of-sentence.
`encode` returns ids without BOS/EOS; `decode` drops special ids and detokenises.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable
from pathlib import Path

from translator.io import ArtifactError, atomic_path, atomic_write_json

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
# SentencePiece trains on at most this many sentences (a seeded uniform sample of a larger
# training split), which bounds its memory; a split of at most this many trains on all of them.
SENTENCEPIECE_MAX_SENTENCES = 2_000_000


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

    def save(self, path: str | Path) -> None:
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece (unigram or BPE) subword model."""

    type_name = "sentencepiece"

    def __init__(self, model_proto: bytes, lowercase: bool = False):
        import sentencepiece as spm

        self._proto = model_proto
        self.lowercase = lowercase
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

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
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
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
        return cls(buf.getvalue(), lowercase=lowercase)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

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
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
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
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["vocab"], lowercase=data.get("lowercase", False))


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
