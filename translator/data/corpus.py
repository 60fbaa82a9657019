"""Corpus readers: TSV pairs, aligned text files, TFDS translation datasets and the bundled corpus.

The `iter_*` readers (and :func:`read_split`, which dispatches on `data.corpus`) yield
:class:`Pair` lazily, so a corpus larger than memory streams through `prepare`; `read_tsv`,
`read_lines` and `read_text_pair` are their list forms, for the small files of evaluation.
A missing file is reported when the reader is called; a problem in a line (named `FILE:LINE`)
when iteration reaches it.
"""

from __future__ import annotations

import gzip
import itertools
import random
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
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
        if path.stat().st_size == 0:  # Python reads an empty file as an empty gzip stream
            raise CorpusError(f"{path}: not a valid gzip file (it is empty: truncated?)")
        return gzip.open(path, "rb")
    return open(path, "rb")


# What reading a damaged .gz raises: not gzip at all or a bad checksum (gzip.BadGzipFile, an
# OSError), a stream that stops early (EOFError), corrupt compressed data (zlib.error).
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _gzip_error(path: Path, e: BaseException, lines: int) -> CorpusError:
    """A damaged .gz as a CorpusError naming the file and the last whole line read."""
    if isinstance(e, EOFError):
        return CorpusError(
            f"{path}: the gzip stream ends early after line {lines} (truncated?); "
            "restore or re-download the file"
        )
    reason = str(e).strip() or type(e).__name__
    if lines == 0 and reason.startswith("Not a gzipped file"):
        return CorpusError(
            f"{path}: not a valid gzip file; restore it, or give an uncompressed file a name "
            "without .gz"
        )
    return CorpusError(
        f"{path}: damaged gzip data after line {lines} ({reason}); restore or re-download the file"
    )


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """`(line number, bytes)` of each line of a file (optionally .gz), lazily.

    Raises:
        CorpusError: when reached, damaged gzip data (naming the file and the line reached).
    """
    with _open_text(path) as f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except _GZIP_ERRORS as e:
                raise _gzip_error(path, e, lineno) from None
            if not raw:
                return
            lineno += 1
            yield lineno, raw


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


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise CorpusError(f"{path} is a directory; give a file")
    if not path.exists():
        raise CorpusError(f"file not found: {path}")
    if not path.is_file():  # a pipe may be read only once, and corpora are read more than once
        raise CorpusError(f"{path} is not a regular file (a pipe or a device); give a file")
    return path


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 text file (optionally .gz) without their line endings, lazily.

    Raises:
        CorpusError: at once if the file is missing; when reached, a line that is not UTF-8.
    """
    return _lines(_existing(path))


def _lines(path: Path) -> Iterator[str]:
    for lineno, raw in _raw_lines(path):
        yield decode_line(raw, path, lineno).rstrip("\r\n")


def read_lines(path: str | Path) -> list[str]:
    """Read a UTF-8 text file (optionally .gz) into lines without their line endings."""
    return list(iter_lines(path))


@dataclass
class ReadReport:
    """What a reader skipped: lines without exactly one tab (with `skip_malformed`), and blank lines."""

    malformed: int = 0
    blank: int = 0


def iter_tsv(
    path: str | Path, skip_malformed: bool = False, report: ReadReport | None = None
) -> Iterator[Pair]:
    """`source<TAB>target` lines as pairs, lazily (blank lines are skipped and counted).

    Args:
        path: a UTF-8 TSV file (optionally .gz), one pair a line.
        skip_malformed: skip (and count in `report`) lines without exactly one tab instead of failing.
        report: receives the counts of skipped lines as the iteration goes.

    Raises:
        CorpusError: at once if the file is missing; when reached, a line that is not UTF-8 or
            has not exactly one tab.
    """
    return _tsv_pairs(_existing(path), skip_malformed, report)


def _tsv_pairs(path: Path, skip_malformed: bool, report: ReadReport | None) -> Iterator[Pair]:
    for lineno, raw in _raw_lines(path):
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
            # data.skip_malformed applies to the corpus that prepare reads (with a report),
            # not to test sets and run splits read elsewhere
            hint = " or set data.skip_malformed: true" if report is not None else ""
            raise CorpusError(
                f"{path}:{lineno}: expected exactly one tab (source<TAB>target), found "
                f"{len(fields) - 1}; fix the line{hint}"
            )
        yield Pair(fields[0], fields[1])


def read_tsv(
    path: str | Path, skip_malformed: bool = False, report: ReadReport | None = None
) -> list[Pair]:
    """Read `source<TAB>target` lines into a list (see :func:`iter_tsv`).

    Raises:
        CorpusError: the file is missing, is not UTF-8, or a line has not exactly one tab.
    """
    return list(iter_tsv(path, skip_malformed, report))


def count_lines(path: str | Path) -> int:
    """Newline-terminated lines of a file (plus an unterminated last one), in bounded memory.

    Raises:
        CorpusError: the file is missing, or is a damaged .gz (naming the line reached).
    """
    path = _existing(path)
    n, last = 0, b"\n"
    with _open_text(path) as f:
        while True:
            try:
                chunk = f.read1(1 << 20)  # what was decompressed, before an error
            except _GZIP_ERRORS as e:
                raise _gzip_error(path, e, n) from None
            if not chunk:
                break
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def iter_text_pair(src_path: str | Path, tgt_path: str | Path) -> Iterator[Pair]:
    """Two aligned plain-text files, one sentence a line, as pairs, lazily.

    Raises:
        CorpusError: at once if a file is missing; at the end of the shorter file if their line
            counts differ (naming both counts).
    """
    src, tgt = _existing(src_path), _existing(tgt_path)
    return _aligned(src, tgt)


def _aligned(src_path: Path, tgt_path: Path) -> Iterator[Pair]:
    n = 0
    src, tgt = _lines(src_path), _lines(tgt_path)
    for s in src:
        t = next(tgt, None)
        if t is None:
            n_src = n + 1 + sum(1 for _ in src)
            raise CorpusError(
                f"{src_path} has {n_src} lines but {tgt_path} has {n}; aligned files must match"
            )
        n += 1
        yield Pair(s, t)
    n_tgt = n + sum(1 for _ in tgt)
    if n_tgt != n:
        raise CorpusError(
            f"{src_path} has {n} lines but {tgt_path} has {n_tgt}; aligned files must match"
        )


def read_text_pair(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Read two aligned plain-text files, one sentence a line."""
    return list(iter_text_pair(src_path, tgt_path))


def iter_tfds(
    name: str, split: str, src_lang: str, tgt_lang: str, data_dir: str | None = None
) -> Iterator[Pair]:
    """A TensorFlow Datasets translation dataset, e.g. `ted_hrlr_translate/pt_to_en`, as pairs,
    lazily (the dataset is opened at once, so a missing one fails here).

    The dataset must already be prepared in `data_dir` (there is no network at run time), or be mocked.
    """
    import tensorflow_datasets as tfds

    builder = name.split("/")[0].split(":")[0]
    # The community registry would be read from GCS (gs://tfds-data/...): no network at run time.
    known = tfds.list_builders(with_community_datasets=False)
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
    return _tfds_pairs(tfds.as_numpy(ds), name, src_lang, tgt_lang)


def _tfds_pairs(examples, name: str, src_lang: str, tgt_lang: str) -> Iterator[Pair]:
    for ex in examples:
        if src_lang not in ex or tgt_lang not in ex:
            raise CorpusError(
                f"TFDS dataset {name!r} has features {sorted(ex)}; set data.src_lang and data.tgt_lang to two of them"
            )
        yield Pair(ex[src_lang].decode("utf-8"), ex[tgt_lang].decode("utf-8"))


def read_tfds(
    name: str, split: str, src_lang: str, tgt_lang: str, data_dir: str | None = None
) -> list[Pair]:
    """Read a TensorFlow Datasets translation dataset into a list (see :func:`iter_tfds`)."""
    return list(iter_tfds(name, split, src_lang, tgt_lang, data_dir))


def normalize(text: str) -> str:
    """NFC-normalise and collapse runs of whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass
class CleanReport:
    """How many pairs cleaning dropped, and why."""

    kept: int = 0
    empty: int = 0
    too_long: int = 0


def clean_pair(pair: Pair, max_words: int, report: CleanReport) -> Pair | None:
    """`pair` NFC-normalised, or None (counted in `report`) if a side is empty or longer than
    `max_words` words."""
    src, tgt = normalize(pair.src), normalize(pair.tgt)
    if not src or not tgt:
        report.empty += 1
        return None
    if len(src.split()) > max_words or len(tgt.split()) > max_words:
        report.too_long += 1
        return None
    report.kept += 1
    return Pair(src, tgt)


def iter_clean(pairs: Iterable[Pair], max_words: int, report: CleanReport) -> Iterator[Pair]:
    """The kept pairs of :func:`clean`, lazily; `report` counts as the iteration goes."""
    for p in pairs:
        kept = clean_pair(p, max_words, report)
        if kept is not None:
            yield kept


def clean(pairs: Iterable[Pair], max_words: int) -> tuple[list[Pair], CleanReport]:
    """NFC-normalise, drop pairs with an empty side or a side longer than `max_words` words."""
    report = CleanReport()
    return list(iter_clean(pairs, max_words, report)), report


def split_sizes(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of `n` pairs a made split puts in valid and in test (at least one each).

    Raises:
        CorpusError: too few pairs to leave any for training.
    """
    n_valid = max(1, int(round(n * valid_fraction)))
    n_test = max(1, int(round(n * test_fraction)))
    if n_valid + n_test >= n:
        raise CorpusError(
            f"only {n} pair{'s' if n != 1 else ''} after cleaning: too few to split into train, "
            "valid and test (give more pairs, or data.valid and data.test)"
        )
    return n_valid, n_test


def heldout_indices(
    n: int, valid_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """The positions (in a stream of `n` pairs) of a made split's valid and test pairs, in the
    order they are written: `random.Random(seed).sample(range(n), n_valid + n_test)`, valid
    first. O(valid + test) memory, so a split can be cut from a stream in two passes.

    Raises:
        CorpusError: too few pairs (see :func:`split_sizes`).
    """
    n_valid, n_test = split_sizes(n, valid_fraction, test_fraction)
    chosen = random.Random(seed).sample(range(n), n_valid + n_test)
    return chosen[:n_valid], chosen[n_valid:]


def split_pairs(
    pairs: list[Pair], valid_fraction: float, test_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Deterministically shuffle and split a list of pairs into train, valid and test.

    (`prepare` cuts its splits from a stream instead, with :func:`heldout_indices`.)
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_valid, n_test = split_sizes(len(pairs), valid_fraction, test_fraction)
    shuffled = [pairs[i] for i in order]
    return shuffled[n_valid + n_test :], shuffled[:n_valid], shuffled[n_valid : n_valid + n_test]


def read_split(
    d: DataConfig, split: str, report: ReadReport | None = None
) -> Iterator[Pair] | None:
    """The raw pairs of `split` (`train`, `valid`, `test`) of the corpus `d` describes, lazily.

    `data.corpus` is `ding-de-en` (bundled), `tsv`, `text` (aligned files) or `tfds:NAME`. None
    when the corpus has no such split (valid and test are then cut from train). Each call opens
    the files again, so a split can be read twice (as `prepare` does to cut valid and test).

    Raises:
        CorpusError: naming the file (and line), or the config key and the valid choices. A
            missing file or dataset fails at the call; a bad line when the iteration reaches it.
    """
    if d.corpus == BUNDLED or d.corpus.startswith("tfds:"):
        for key in ("train", "valid", "test"):  # ignored without a word, they trained on another
            if getattr(d, key):  # corpus than the one named
                raise CorpusError(
                    f"data.{key}: {getattr(d, key)!r} is read only with data.corpus: tsv or text, "
                    f"but data.corpus is {d.corpus}; set data.corpus: tsv (or text), or leave "
                    f"data.{key} null"
                )
    if d.corpus == BUNDLED:
        if split != "train":
            return iter_tsv(bundled_path(split))
        # Each training sentence `sentence_repeats` times (the file read again), then the phrases.
        sources = [iter_tsv(bundled_path("train")) for _ in range(d.effective_sentence_repeats)]
        if d.use_phrases:
            sources.append(iter_tsv(bundled_path("phrases")))
        return itertools.chain(*sources)
    if d.corpus.startswith("tfds:"):
        name = d.corpus[len("tfds:") :]
        tfds_split = {"train": "train", "valid": "validation", "test": "test"}[split]
        try:
            return iter_tfds(name, tfds_split, d.src_lang, d.tgt_lang, d.tfds_data_dir)
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
        return iter_tsv(spec, skip_malformed=d.skip_malformed, report=report)
    if d.corpus == "text":
        files = [p.strip() for p in spec.split(",")]
        if len(files) != 2:
            raise CorpusError(
                f"data.{split}: expected SRC_FILE,TGT_FILE for data.corpus: text, got {spec!r}"
            )
        return iter_text_pair(*files)
    raise CorpusError(
        f"data.corpus: invalid value {d.corpus!r}; valid choices: ding-de-en, tsv, text, tfds:NAME"
    )


def write_tsv(pairs: Iterable[Pair], path: str | Path) -> int:
    """Write pairs as TSV atomically, streaming (a temporary file renamed at the end, so an
    error while `pairs` is consumed leaves `path` untouched); returns how many were written."""
    from translator.io import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for p in pairs:
            f.write(f"{p.src}\t{p.tgt}\n")
            n += 1
    return n
