"""The encoded training split as sharded TFRecord files, and the examples source that reads them.

The tokenize stage encodes `data/train.tsv` in chunks and writes, in the run directory:

```
data/train-00000-of-00025.tfrecord ...  one `tf.train.Example` per pair, int64 lists `src` and
                                        `tgt` (ids without BOS/EOS), in train.tsv order, at most
                                        SHARD_PAIRS pairs a shard
data/train.lengths.npy                  per pair max(len(src), len(tgt) + 1) (uint16, or uint32
                                        for longer sentences): the exact number of batches of a
                                        pass without reading the records
data/train.records.json                 the manifest: shards with their pair counts and sizes in
                                        bytes, pair and token counts, max lengths, and digests of
                                        what the records were made from (train.tsv, the two
                                        tokenizers)
```

Every file is written atomically and the manifest last (it is removed first when the records are
rewritten), so a manifest always describes whole shards. Training reads them with
:class:`RecordExamples` (see :func:`open_train_examples`) and never holds the corpus in memory;
it checks each shard's size against the manifest first (manifests written before the sizes were
recorded are read unchecked), so a truncated shard is an error naming it, not fewer pairs; the
tokenize and train stages write records that fail these checks again (:func:`records_complete`).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from translator.data.corpus import Pair, iter_tsv
from translator.data.tokenizers import Tokenizer, load_tokenizer
from translator.io import (
    ArtifactError,
    atomic_path,
    atomic_write_json,
    current_umask,
    file_digest,
    read_json,
)
from translator.rundir import RunDir

FORMAT = 1
SHARD_PAIRS = 200_000  # pairs per shard file (about 20 MB)
ENCODE_CHUNK = 10_000  # sentences encoded at a time
INTERLEAVE_SHARDS = 8  # shards read at a time when the shuffle buffer holds less than the data
FEATURES = {"src": tf.io.RaggedFeature(tf.int64), "tgt": tf.io.RaggedFeature(tf.int64)}


def shard_name(prefix: str, index: int, count: int) -> str:
    """`train-00000-of-00025.tfrecord`."""
    return f"{prefix}-{index:05d}-of-{count:05d}.tfrecord"


def _example(src: list[int], tgt: list[int]) -> bytes:
    feature = {
        "src": tf.train.Feature(int64_list=tf.train.Int64List(value=src)),
        "tgt": tf.train.Feature(int64_list=tf.train.Int64List(value=tgt)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _chunks(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    it = iter(pairs)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def write_records(
    pairs: Iterable[Pair],
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    manifest_path: str | Path,
    made_from: dict | None = None,
    shard_pairs: int = SHARD_PAIRS,
    chunk: int = ENCODE_CHUNK,
) -> dict:
    """Encode `pairs` (streamed, `chunk` at a time) and write them as TFRecord shards of at most
    `shard_pairs` pairs beside `manifest_path`, then the lengths and the manifest; returns the
    manifest. Memory: one chunk, one shard's writer and 4 bytes a pair for the lengths.

    Each shard is written under a temporary name and renamed when all are whole (their names
    say how many there are); the manifest goes last. The shard names start with the manifest's
    name up to its first dot (`train`). Shards of an earlier write that the new manifest does
    not list are removed.

    Raises:
        ValueError: `pairs` is empty.
    """
    manifest_path = Path(manifest_path)
    directory, prefix = manifest_path.parent, manifest_path.name.split(".")[0]
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # readers trust a manifest only when it is whole
    for leftover in directory.glob(f".{prefix}-*.tmp"):  # of a write that was killed
        leftover.unlink()
    lengths = array("I")
    src_tokens = tgt_tokens = src_max = tgt_max = 0
    shards: list[tuple[Path, int]] = []  # temporary file, pairs
    writer = None
    try:
        for part in _chunks(pairs, chunk):
            src_ids = src_tok.encode_batch([p.src for p in part])
            tgt_ids = tgt_tok.encode_batch([p.tgt for p in part])
            for s, t in zip(src_ids, tgt_ids, strict=True):
                if writer is None or shards[-1][1] == shard_pairs:
                    if writer is not None:
                        writer.close()
                    fd, tmp = tempfile.mkstemp(
                        prefix=f".{prefix}-{len(shards):05d}.", suffix=".tmp", dir=directory
                    )
                    os.close(fd)
                    shards.append((Path(tmp), 0))
                    writer = tf.io.TFRecordWriter(tmp)
                writer.write(_example(s, t))
                shards[-1] = (shards[-1][0], shards[-1][1] + 1)
                lengths.append(max(len(s), len(t) + 1))
                src_tokens += len(s)
                tgt_tokens += len(t)
                src_max = max(src_max, len(s))
                tgt_max = max(tgt_max, len(t))
        if writer is not None:
            writer.close()
            writer = None
        if not lengths:
            raise ValueError(f"no pairs to write beside {manifest_path}")
        names = [shard_name(prefix, i, len(shards)) for i in range(len(shards))]
        umask = current_umask()
        for (tmp, _), name in zip(shards, names, strict=True):
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, directory / name)
    finally:
        if writer is not None:
            writer.close()
        for tmp, _ in shards:
            tmp.unlink(missing_ok=True)
    for old in directory.glob(f"{prefix}-*-of-*.tfrecord"):
        if old.name not in names:
            old.unlink()
    array_lengths = np.frombuffer(lengths, dtype=np.uint32)
    dtype = np.uint16 if array_lengths.max() <= np.iinfo(np.uint16).max else np.uint32
    lengths_name = f"{prefix}.lengths.npy"
    with atomic_path(directory / lengths_name) as tmp, open(tmp, "wb") as f:
        np.save(f, array_lengths.astype(dtype))
    manifest = {
        "format": FORMAT,
        "pairs": len(lengths),
        # Each shard's size in bytes: training checks it (a truncated shard would otherwise be
        # read as fewer pairs, or fail mid-epoch). Manifests written before it have none.
        "shards": [
            {"file": name, "pairs": n, "bytes": (directory / name).stat().st_size}
            for name, (_, n) in zip(names, shards, strict=True)
        ],
        "features": "tf.train.Example with int64 lists src and tgt (ids without BOS/EOS)",
        "lengths": lengths_name,
        "src_tokens": src_tokens,
        "tgt_tokens": tgt_tokens,
        "target_tokens": tgt_tokens + len(lengths),  # with EOS, as the batches count them
        "src_max_tokens": src_max,
        "tgt_max_tokens": tgt_max,
        "max_length": int(array_lengths.max()),
        "made_from": made_from or {},
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


def _made_from(run: RunDir, kind: str) -> dict:
    """Digests of what the training records are made from: train.tsv and the tokenizers."""
    return {
        "tokenizer": kind,
        "train.tsv": file_digest(run.split("train")),
        "src": file_digest(run.tokenizer_file(kind, "src")),
        "tgt": file_digest(run.tokenizer_file(kind, "tgt")),
    }


def write_train_records(
    run: RunDir,
    src_tok: Tokenizer,
    tgt_tok: Tokenizer,
    progress: Callable[[Iterable[Pair]], Iterable[Pair]] | None = None,
    shard_pairs: int = SHARD_PAIRS,
) -> dict:
    """Encode `data/train.tsv` with the run's saved tokenizers (`src_tok`, `tgt_tok`) into the
    training records (see the module docstring); returns the manifest. `progress` wraps the
    stream of pairs (a progress bar)."""
    made_from = _made_from(run, src_tok.type_name)
    pairs: Iterable[Pair] = iter_tsv(run.split("train"))
    if progress is not None:
        pairs = progress(pairs)
    return write_records(
        pairs, src_tok, tgt_tok, run.train_records, made_from, shard_pairs=shard_pairs
    )


def records_complete(manifest_path: str | Path) -> bool:
    """Whether the records are whole: a readable manifest, every shard it lists with the size in
    bytes it records (manifests from before the sizes were recorded: any size), and a lengths
    file with one length a pair (no digests are checked). Records that are not whole are written
    again by the tokenize and train stages, from train.tsv and the run's tokenizers."""
    try:
        RecordExamples(manifest_path)
    except (ArtifactError, OSError):
        return False
    return True


def _read_lengths(path: Path, what_to_do: str) -> np.ndarray:
    """The lengths file: a 1-D array of positive integers, one a pair.

    Raises:
        ArtifactError: it is not readable as that (empty, truncated, garbage, another array),
            naming it, with `what_to_do`.
    """
    try:
        lengths = np.load(path)  # uint16: 2 bytes a pair
    except Exception as e:  # OSError, ValueError, EOFError, pickle errors: all mean "damaged"
        reason = str(e).strip() or type(e).__name__
        raise ArtifactError(f"{path} is not readable ({reason}); {what_to_do}") from None
    if (
        not isinstance(lengths, np.ndarray)
        or lengths.ndim != 1
        or not np.issubdtype(lengths.dtype, np.integer)
        or (lengths.size and lengths.min() < 1)
    ):
        what = getattr(lengths, "dtype", type(lengths).__name__)
        shape = getattr(lengths, "shape", "?")
        raise ArtifactError(
            f"{path} is not a lengths file (an array of {what}, shape {shape}, where one "
            f"positive integer a pair belongs); {what_to_do}"
        )
    return lengths


class RecordExamples:
    """The training records as an examples source for `BucketedDataset` (see
    `translator.data.batching.ExamplesSource`): pair lengths from the lengths file, pairs
    streamed from the shards, never all in memory.

    Raises:
        ArtifactError: the manifest, a shard or the lengths file is missing or damaged (named,
            with what to do).
    """

    def __init__(self, manifest_path: str | Path):
        self.manifest_path = Path(manifest_path)
        what_to_do = (
            "run the tokenize stage again (translator tokenize CONFIG --run-dir "
            f"{self.manifest_path.parent.parent} --force)"
        )
        if not self.manifest_path.is_file():
            raise ArtifactError(f"{self.manifest_path} is missing; {what_to_do}")
        manifest = read_json(self.manifest_path, what_to_do)
        try:
            if manifest["format"] != FORMAT:
                raise ArtifactError(
                    f"{self.manifest_path} has records format {manifest['format']!r}, this "
                    f"version reads {FORMAT}; {what_to_do}"
                )
            directory = self.manifest_path.parent
            self.files = [str(directory / s["file"]) for s in manifest["shards"]]
            self.counts = [int(s["pairs"]) for s in manifest["shards"]]
            sizes = [
                None if s.get("bytes") is None else int(s["bytes"]) for s in manifest["shards"]
            ]
            self.pairs = int(manifest["pairs"])
            self.target_tokens = int(manifest["target_tokens"])
            lengths_path = directory / manifest["lengths"]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(
                f"{self.manifest_path} is not a records manifest ({type(e).__name__}: {e}); "
                f"{what_to_do}"
            ) from None
        self.manifest = manifest
        for f in [*self.files, lengths_path]:
            if not Path(f).is_file():
                raise ArtifactError(f"{f} is missing; {what_to_do}")
        for f, size in zip(self.files, sizes, strict=True):
            actual = Path(f).stat().st_size
            if size is not None and actual != size:
                raise ArtifactError(
                    f"{f} has {actual} bytes, but {self.manifest_path.name} lists {size}: the "
                    f"shard is truncated or damaged; {what_to_do}"
                )
        self.lengths = _read_lengths(lengths_path, what_to_do)
        if len(self.lengths) != self.pairs or sum(self.counts) != self.pairs:
            raise ArtifactError(
                f"{self.manifest_path}: {self.pairs} pairs, but the shards hold "
                f"{sum(self.counts)} and {lengths_path.name} {len(self.lengths)}; {what_to_do}"
            )
        self.offsets = [0, *itertools.accumulate(self.counts)][:-1]

    def __len__(self) -> int:
        return self.pairs

    def __repr__(self) -> str:
        return f"RecordExamples({str(self.manifest_path)!r}: {self.pairs} pairs)"

    def stream(
        self, shard: tuple[int, int] | None = None, order_seed: int | None = None
    ) -> tf.data.Dataset:
        """The serialized records of `shard` (the pairs whose train.tsv position is `index`
        modulo `num_shards`, whatever the shard order): in train.tsv order, or with
        `order_seed`, the shard files in a seeded order (a new one each pass) read
        `INTERLEAVE_SHARDS` at a time, one record from each in turn."""
        num, index = shard if shard is not None else (1, 0)
        # The first record of each file that belongs to `shard`, by its position in train.tsv.
        starts = [(index - offset) % num for offset in self.offsets]
        files = tf.data.Dataset.from_tensor_slices(
            (tf.constant(self.files), tf.constant(starts, tf.int64))
        )
        cycle = 1
        if order_seed is not None and len(self.files) > 1:
            files = files.shuffle(len(self.files), seed=order_seed, reshuffle_each_iteration=True)
            cycle = min(len(self.files), INTERLEAVE_SHARDS)

        def read(path, start):
            records = tf.data.TFRecordDataset(path, buffer_size=1 << 18)
            if num > 1:
                records = records.skip(start).shard(num, 0)
            return records

        return files.interleave(read, cycle_length=cycle, block_length=1)

    def decode(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Serialized records -> `(src, tgt)` int32 vectors, in order."""

        def parse(record):
            ex = tf.io.parse_single_example(record, FEATURES)
            return tf.cast(ex["src"], tf.int32), tf.cast(ex["tgt"], tf.int32)

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def records_up_to_date(run: RunDir, kind: str) -> bool:
    """Whether the run's training records are whole and made from its current train.tsv and
    tokenizers of `kind`."""
    if not records_complete(run.train_records):
        return False
    try:
        made_from = read_json(run.train_records).get("made_from", {})
        return made_from == _made_from(run, kind)
    except (OSError, ArtifactError, AttributeError):
        return False


def open_train_examples(
    run: RunDir | str | Path, tokenizer_type: str | None = None, write_missing: bool = True
) -> RecordExamples:
    """The run's training split as an examples source for `BucketedDataset.from_examples`.

    The records are written by the tokenize stage. A run directory from before they existed
    (or whose records are incomplete, or older than its train.tsv or tokenizers) gets them
    here, encoded with the run's own tokenizers, so its checkpoints stay valid. Call it with the
    run directory's writer lock held (the train stage holds it), or with `write_missing=False`
    (a process that only reads the run directory, e.g. a training worker other than the chief).

    Args:
        run: the run directory.
        tokenizer_type: `sentencepiece`, `word` or `char`; default: the run's config.yaml.
        write_missing: write missing or outdated records; False: an `ArtifactError` instead.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    kind = tokenizer_type or run.load_config().tokenizer.type
    if not records_up_to_date(run, kind):
        if not write_missing:
            raise ArtifactError(
                f"{run.train_records}: the training records are missing or older than "
                f"{run.split('train').name} and the tokenizers; run the tokenize stage first "
                "(translator tokenize CONFIG --run-dir RUN_DIR --force)"
            )
        if not run.split("train").is_file():
            raise FileNotFoundError(
                f"{run.split('train')} is missing; run the `prepare` stage first"
            )
        src_tok = load_tokenizer(run.tokenizers, kind, "src")
        tgt_tok = load_tokenizer(run.tokenizers, kind, "tgt")
        print(f"writing the training records of {run.path} ({run.train_records.name})", flush=True)
        write_train_records(run, src_tok, tgt_tok)
    return RecordExamples(run.train_records)
