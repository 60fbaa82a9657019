"""`translator score RUN_DIR --input PAIRS`: the log-probability a model gives translations.

Input: a TSV file of `source<TAB>target` lines, or `SRC_FILE,TGT_FILE` (aligned text files, one
sentence a line). Output: one line per input line, `TOTAL<TAB>PER_TOKEN<TAB>TOKENS`: the sum of
the target tokens' log-probabilities with EOS (natural log), its mean per token, and the number of
target tokens with EOS. Pairs are read and scored in chunks, so a file of any size streams through.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from translator.pipelines.argtypes import positive_int


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir",
        help="a run directory with a trained model, or RUN_A+RUN_B: an ensemble of runs that "
        "share their tokenizers (the mean of their log-probabilities per token)",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="PAIRS",
        help="FILE.tsv (source<TAB>target a line) or SRC_FILE,TGT_FILE (aligned text files)",
    )
    p.add_argument(
        "--output",
        help="write the scores here, atomically (default: stdout); a line per input line: "
        "TOTAL<TAB>PER_TOKEN<TAB>TOKENS",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="pairs per batch (default: the run's decode section)",
    )


def input_files(spec: str) -> list[Path]:
    """`FILE.tsv` -> [FILE.tsv]; `SRC_FILE,TGT_FILE` (unless a file has that very name) -> both.

    Raises:
        FileNotFoundError, ValueError: a file is missing or is a directory, naming it.
    """
    if "," in spec and not Path(spec).exists():
        names = [f.strip() for f in spec.split(",")]
    else:
        names = [spec.strip()]
    if len(names) > 2 or not all(names):  # (Path("") is ".", a directory)
        raise ValueError(f"--input {spec!r}: expected FILE.tsv or SRC_FILE,TGT_FILE")
    files = [Path(f) for f in names]
    for f in files:
        if f.is_dir():
            raise ValueError(f"--input {f} is a directory; give a file")
        if not f.is_file():
            raise FileNotFoundError(f"input file not found: {f}")
    return files


def read_pairs(files: list[Path]) -> Iterator[tuple[str, str]]:
    """(source, target) per line of a TSV file or of two aligned files, lazily.

    Raises:
        CorpusError: when reached, a TSV line without exactly one tab, a line that is not UTF-8,
            or aligned files of different lengths (naming the file and line).
    """
    from translator.data.corpus import CorpusError, iter_lines, iter_text_pair

    if len(files) == 2:
        for pair in iter_text_pair(*files):
            yield pair.src, pair.tgt
        return
    for lineno, line in enumerate(iter_lines(files[0]), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise CorpusError(
                f"{files[0]}:{lineno}: expected source<TAB>target, found {len(fields) - 1} tabs; "
                "give one pair a line (or --input SRC_FILE,TGT_FILE)"
            )
        yield fields[0], fields[1]


def format_score(s) -> str:
    """`TOTAL<TAB>PER_TOKEN<TAB>TOKENS` of a `ScoredPair`."""
    return f"{s.total:.6f}\t{s.per_token:.6f}\t{s.tokens}\n"


def score_stream(
    translator, pairs: Iterator[tuple[str, str]], out: TextIO, batch_size: int, chunk: int
) -> int:
    """Score `pairs` chunk by chunk, writing one line per pair to `out`; returns the count."""
    done = 0
    while batch := list(itertools.islice(pairs, chunk)):
        scores = translator.score([s for s, _ in batch], [t for _, t in batch], batch_size)
        out.write("".join(format_score(s) for s in scores))
        out.flush()
        done += len(batch)
    return done


def cmd_score(args) -> int:
    from translator.pipelines.cli import _ensemble_members, import_tensorflow_quietly

    from translator.io import atomic_path, check_not_an_input, check_output_path
    from translator.rundir import RunDir
    from translator.translate_file import CHUNK_LINES, OutputError

    # Everything is checked before TensorFlow and the model load.
    runs = [RunDir(m).require_trained() for m in _ensemble_members(args.run_dir)]
    batch_size = runs[0].load_config().decode.with_overrides(batch_size=args.batch_size).batch_size
    files = input_files(args.input)
    output = check_output_path(args.output, "--output") if args.output else None
    if output is not None:
        check_not_an_input(output, files)
    import_tensorflow_quietly()
    from translator.translate import Translator

    translator = Translator.load(runs if len(runs) > 1 else runs[0])
    t0 = time.time()
    pairs = read_pairs(files)
    if output is None:
        done = score_stream(translator, pairs, sys.stdout, batch_size, CHUNK_LINES)
    else:
        try:
            with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
                done = score_stream(translator, pairs, out, batch_size, CHUNK_LINES)
        except OSError as e:
            raise OutputError(f"{output}: cannot write the scores ({e.strerror or e})") from None
    seconds = max(time.time() - t0, 1e-9)
    print(f"scored {done} pairs in {seconds:.1f} s ({done / seconds:.1f} pairs/s)", file=sys.stderr)
    return 0
