"""Corpus readers: TSV pairs, aligned text files, TFDS translation datasets and the bundled corpus.

Every reader returns a list of :class:`Pair`. Problems in a file are reported as
:class:`CorpusError` naming the file and line.
"""

from __future__ import annotations

import gzip
import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from translator.config import DataConfig


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class Pair:
    """One source sentence and its translation."""

    src: str
    tgt: str


BUNDLED = "ding-de-en"
BUNDLED_SPLITS = ("train", "valid", "test", "phrases")


def bundled_path(split: str) -> Path:
    """Path of a split of the bundled Ding German–English corpus (gzip-compressed TSV)."""
    if split not in BUNDLED_SPLITS:
        raise CorpusError(
            f"bundled corpus has no split {split!r}; valid: {', '.join(BUNDLED_SPLITS)}"
        )
    return Path(str(resources.files("translator") / "data" / BUNDLED / f"{split}.tsv.gz"))


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def decode_line(raw: bytes, path: str | Path, lineno: int) -> str:
    """One line of a UTF-8 file as text (a byte-order mark opening line 1 is dropped).

    Raises:
        CorpusError: `PATH:LINE: invalid UTF-8 ...`.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})"
        ) from None
    return text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 text file (optionally .gz) into lines without their line endings."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    lines = []
    with _open_text(path) as f:
        for lineno, raw in enumerate(f, start=1):
            lines.append(decode_line(raw, path, lineno).rstrip("\r\n"))
    return lines


@dataclass
class ReadReport:
    """What a reader skipped: lines without exactly one tab (with `skip_malformed`), and blank lines."""

    malformed: int = 0
    blank: int = 0


def read_tsv(
    path: str | Path, skip_malformed: bool = False, report: ReadReport | None = None
) -> list[Pair]:
    """Read `source<TAB>target` lines.

    Args:
        path: a UTF-8 TSV file (optionally .gz), one pair a line.
        skip_malformed: skip (and count in `report`) lines without exactly one tab instead of failing.
        report: receives the count of skipped lines.

    Raises:
        CorpusError: the file is missing, is not UTF-8, or a line has not exactly one tab.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    pairs = []
    with _open_text(path) as f:
        for lineno, raw in enumerate(f, start=1):
            line = decode_line(raw, path, lineno).rstrip("\r\n")
            if not line.strip():
                if report is not None:
                    report.blank += 1
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                if skip_malformed:
                    if report is not None:
                        report.malformed += 1
                    continue
                raise CorpusError(
                    f"{path}:{lineno}: expected exactly one tab (source<TAB>target), found "
                    f"{len(fields) - 1}; fix the line or set data.skip_malformed: true"
                )
            pairs.append(Pair(fields[0], fields[1]))
    return pairs


def read_text_pair(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Read two aligned plain-text files, one sentence a line."""
    src = read_lines(src_path)
    tgt = read_lines(tgt_path)
    if len(src) != len(tgt):
        raise CorpusError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; aligned files must match"
        )
    return [Pair(s, t) for s, t in zip(src, tgt, strict=True)]


def read_tfds(
    name: str, split: str, src_lang: str, tgt_lang: str, data_dir: str | None = None
) -> list[Pair]:
    """Read a TensorFlow Datasets translation dataset, e.g. `ted_hrlr_translate/pt_to_en`.

    The dataset must already be prepared in `data_dir` (there is no network at run time), or be mocked.
    """
    import tensorflow_datasets as tfds

    builder = name.split("/")[0].split(":")[0]
    known = tfds.list_builders()
    if builder not in known:
        import difflib

        close = difflib.get_close_matches(builder, known, n=5, cutoff=0.5)
        hint = f"; closest names: {', '.join(close)}" if close else ""
        raise CorpusError(f"data.corpus: TFDS has no dataset {builder!r}{hint}")
    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several types for a missing dataset
        raise CorpusError(
            f"TFDS dataset {name!r} split {split!r} could not be loaded ({type(e).__name__}: {e}); "
            "prepare it first with `tfds build` on a machine with network access and pass data.tfds_data_dir"
        ) from None
    pairs = []
    for ex in tfds.as_numpy(ds):
        if src_lang not in ex or tgt_lang not in ex:
            raise CorpusError(
                f"TFDS dataset {name!r} has features {sorted(ex)}; set data.src_lang and data.tgt_lang to two of them"
            )
        pairs.append(Pair(ex[src_lang].decode("utf-8"), ex[tgt_lang].decode("utf-8")))
    return pairs


def normalize(text: str) -> str:
    """NFC-normalise and collapse runs of whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass
class CleanReport:
    """How many pairs cleaning dropped, and why."""

    kept: int = 0
    empty: int = 0
    too_long: int = 0


def clean(pairs: Iterable[Pair], max_words: int) -> tuple[list[Pair], CleanReport]:
    """NFC-normalise, drop pairs with an empty side or a side longer than `max_words` words."""
    report = CleanReport()
    out = []
    for p in pairs:
        src, tgt = normalize(p.src), normalize(p.tgt)
        if not src or not tgt:
            report.empty += 1
            continue
        if len(src.split()) > max_words or len(tgt.split()) > max_words:
            report.too_long += 1
            continue
        out.append(Pair(src, tgt))
    report.kept = len(out)
    return out, report


def split_pairs(
    pairs: list[Pair], valid_fraction: float, test_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Deterministically shuffle and split pairs into train, valid and test."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(len(pairs) * valid_fraction)))
    n_test = max(1, int(round(len(pairs) * test_fraction)))
    if n_valid + n_test >= len(pairs):
        raise CorpusError(f"only {len(pairs)} pairs: too few to split into train, valid and test")
    shuffled = [pairs[i] for i in order]
    return shuffled[n_valid + n_test :], shuffled[:n_valid], shuffled[n_valid : n_valid + n_test]


def read_split(d: DataConfig, split: str, report: ReadReport | None = None) -> list[Pair] | None:
    """The raw pairs of `split` (`train`, `valid`, `test`) of the corpus `d` describes.

    `data.corpus` is `ding-de-en` (bundled), `tsv`, `text` (aligned files) or `tfds:NAME`. None
    when the corpus has no such split (valid and test are then cut from train).

    Raises:
        CorpusError: naming the file (and line), or the config key and the valid choices.
    """
    if d.corpus == BUNDLED:
        pairs = read_tsv(bundled_path(split))
        if split == "train" and d.use_phrases:
            pairs += read_tsv(bundled_path("phrases"))
        return pairs
    if d.corpus.startswith("tfds:"):
        name = d.corpus[len("tfds:") :]
        tfds_split = {"train": "train", "valid": "validation", "test": "test"}[split]
        try:
            return read_tfds(name, tfds_split, d.src_lang, d.tgt_lang, d.tfds_data_dir)
        except CorpusError:
            if split == "train":
                raise
            return None
    spec = getattr(d, split)
    if not spec:
        if split == "train":
            raise CorpusError(f"data.train is required for data.corpus: {d.corpus}")
        return None
    if d.corpus == "tsv":
        return read_tsv(spec, skip_malformed=d.skip_malformed, report=report)
    if d.corpus == "text":
        files = [p.strip() for p in spec.split(",")]
        if len(files) != 2:
            raise CorpusError(
                f"data.{split}: expected SRC_FILE,TGT_FILE for data.corpus: text, got {spec!r}"
            )
        return read_text_pair(*files)
    raise CorpusError(
        f"data.corpus: invalid value {d.corpus!r}; valid choices: ding-de-en, tsv, text, tfds:NAME"
    )


def write_tsv(pairs: list[Pair], path: str | Path) -> None:
    """Write pairs as TSV atomically."""
    from translator.io import atomic_write_text

    atomic_write_text(path, "".join(f"{p.src}\t{p.tgt}\n" for p in pairs))
