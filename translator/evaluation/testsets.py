"""Test sets: named lists of (source, reference) pairs from TSV files, aligned text files or memory.

A test set is given as `NAME=FILE.tsv`, `NAME=SRC_FILE,REF_FILE` or a bare `FILE` (named by its
stem) on the command line; the Python API also takes a mapping name -> file(s) or pairs. Without
one, a run is evaluated on its own test split (`RUN_DIR/data/test.tsv`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from translator.data.corpus import CorpusError, Pair, read_text_pair, read_tsv
from translator.io import fingerprint

if TYPE_CHECKING:
    from translator.rundir import RunDir


@dataclass
class TestSet:
    """A named list of (source, reference) pairs and where it came from.

    `origin` is the TSV path, `SRC_FILE,REF_FILE`, or `<memory>` for pairs given in Python.
    """

    __test__ = False  # not a pytest test class

    name: str
    pairs: list[Pair]
    origin: str

    @property
    def sources(self) -> list[str]:
        return [p.src for p in self.pairs]

    @property
    def references(self) -> list[str]:
        return [p.tgt for p in self.pairs]

    @property
    def digest(self) -> str:
        """Fingerprint of sources and references (rows with equal digests can be compared)."""
        return fingerprint(self.sources, self.references)


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".tsv", ".txt"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def parse_test_spec(spec: str) -> tuple[str, str]:
    """`NAME=FILE.tsv`, `NAME=SRC_FILE,REF_FILE`, or a bare `FILE` (named by its stem) -> (name, files)."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("--test: empty test set; use NAME=FILE.tsv or NAME=SRC_FILE,REF_FILE")
    if "=" in spec and not Path(spec).is_file():
        name, _, files = spec.partition("=")
        name, files = name.strip(), files.strip()
        if not name or not files:
            raise ValueError(f"--test {spec!r}: expected NAME=FILE.tsv or NAME=SRC_FILE,REF_FILE")
        return name, files
    return _stem(spec.split(",")[0]), spec


def load_test_set(name: str, spec: Any) -> TestSet:
    """Read a test set: a TSV path, `SRC_FILE,REF_FILE` (or a pair of paths), or a list of pairs.

    Raises:
        CorpusError: a file is missing or malformed, aligned files differ in length, or the set
            is empty; the message names the file (and line).
        ValueError: `spec` is none of these.
    """
    if isinstance(spec, (str, Path)):
        text = str(spec)
        if "," in text and not Path(text).is_file():
            files = [f.strip() for f in text.split(",")]
            if len(files) != 2 or not all(files):
                raise CorpusError(f"test set {name!r}: expected SRC_FILE,REF_FILE, got {text!r}")
            pairs, origin = read_text_pair(*files), ",".join(files)
        else:
            pairs, origin = read_tsv(text), text
    elif (
        isinstance(spec, (tuple, list))
        and len(spec) == 2
        and all(isinstance(s, (str, Path)) for s in spec)
    ):  # two paths (a missing one is an error, not a pair of one-character sentences)
        pairs, origin = read_text_pair(*spec), ",".join(map(str, spec))
    else:
        expected = (
            f"test set {name!r}: expected a file path, 'SRC_FILE,REF_FILE', a pair of paths or "
            "a list of (source, reference) string pairs"
        )
        if isinstance(spec, (str, bytes, Mapping)) or not isinstance(spec, Iterable):
            raise ValueError(f"{expected}, got {type(spec).__name__}")
        pairs = []
        for i, p in enumerate(spec):
            if not isinstance(p, Pair) and not (
                isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(x, str) for x in p)
            ):
                raise ValueError(f"{expected}; item {i} is {p!r:.80}")
            pairs.append(p if isinstance(p, Pair) else Pair(p[0], p[1]))
        origin = "<memory>"
    if not pairs:
        raise CorpusError(f"{origin}: test set {name!r} has no sentence pairs")
    return TestSet(name, pairs, origin)


def load_test_sets(
    test_sets: Mapping[str, Any] | Iterable[str | Path] | str | Path,
) -> dict[str, TestSet]:
    """Read several test sets, by name.

    Args:
        test_sets: a mapping name -> anything `load_test_set` reads, or `parse_test_spec` specs
            (one, or a list).

    Returns:
        name -> `TestSet`, in the given order.

    Raises:
        ValueError: two test sets have the same name.
    """
    if isinstance(test_sets, Mapping):
        items = [(str(k), v) for k, v in test_sets.items()]
    else:
        if isinstance(test_sets, (str, Path)):
            test_sets = [test_sets]
        items = [_list_item(i, s) for i, s in enumerate(test_sets)]
    out: dict[str, TestSet] = {}
    for name, spec in items:
        if name in out:
            raise ValueError(f"test set name {name!r} is given twice; name them NAME=FILE")
        out[name] = load_test_set(name, spec)
    return out


def _list_item(index: int, item: Any) -> tuple[str, Any]:
    """(name, spec) of an item of a list of test sets: a spec string or path, or a pair of
    aligned files (named by the source file, as `SRC_FILE,REF_FILE` is)."""
    if isinstance(item, (str, Path)):
        return parse_test_spec(str(item))
    if isinstance(item, (tuple, list)) and len(item) == 2:
        if all(isinstance(x, (str, Path)) for x in item):
            return _stem(str(item[0])), tuple(item)
    raise ValueError(
        f"test set {index}: expected 'NAME=FILE.tsv', 'NAME=SRC_FILE,REF_FILE', a path or a pair "
        f"of paths, got {item!r:.80}; name in-memory pairs with a mapping {{name: pairs}}"
    )


def default_test_set(run: RunDir) -> TestSet:
    """The run's own test split, `RUN_DIR/data/test.tsv`, named `test`."""
    path = run.split("test")
    if not path.is_file():
        raise CorpusError(f"{path} not found: give --test NAME=FILE.tsv or run the `prepare` stage")
    return load_test_set("test", path)
