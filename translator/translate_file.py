"""Streaming translation of large inputs: chunked, in input order, resumable."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from tqdm import tqdm

from translator.data.corpus import CorpusError, decode_line

CHUNK_LINES = 2000
IN_FLIGHT = 2  # chunks translated at once (see translate_stream)


class OutputError(OSError):
    """The translations cannot be written (a full disk, no permission); names the file."""


def read_source_lines(source: BinaryIO | Iterator[str], name: str) -> Iterator[str]:
    """Lines without their endings from text, or from bytes decoded as UTF-8 (`CorpusError`
    naming `name` and the line for invalid UTF-8; a byte-order mark opening the input is dropped)."""
    for lineno, line in enumerate(source, start=1):
        if isinstance(line, bytes):
            line = decode_line(line, name, lineno)
        elif lineno == 1 and line.startswith("\ufeff"):
            line = line[1:]
        yield line.rstrip("\r\n")


def _translate_chunk(translator, chunk: list[str], options: dict, n_best: int) -> list:
    if n_best > 1:
        return translator.translate_nbest(chunk, **options)
    return translator.translate(chunk, **{k: v for k, v in options.items() if k != "n_best"})


def _format(per_input, index: int, n_best: int) -> str:
    if n_best > 1:
        return "".join(f"{index}\t{score:.4f}\t{text}\n" for text, score in per_input)
    return per_input + "\n"


def _lines_done(path: Path, n_best: int) -> int:
    """Complete inputs already in an output file; drops a trailing partial line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    lines = data.decode("utf-8").splitlines()
    if n_best > 1:
        indices = [int(line.split("\t", 1)[0]) for line in lines]
        done = max(indices) + 1 if indices else 0
        # Keep only whole inputs (all n_best lines present).
        if indices and indices.count(done - 1) < n_best:
            keep = [ln for ln, i in zip(lines, indices, strict=True) if i < done - 1]
            path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
            done -= 1
        return done
    return len(lines)


def translate_stream(
    translator,
    source: Iterator[str] | TextIO,
    sink: TextIO | None,
    options: dict,
    output_path: Path | None = None,
    resume: bool = False,
    chunk_lines: int = CHUNK_LINES,
    source_name: str = "<stdin>",
) -> int:
    """Translate lines from `source` chunk by chunk; one output line per input (n_best lines each).

    Writes to `sink`, or appends to `output_path` (after skipping finished inputs with `resume`).
    Progress goes to stderr.
    """
    n_best = options.get("n_best") or translator.decode.n_best
    name = str(output_path) if output_path is not None else "standard output"
    skip = 0
    if output_path is not None and resume and output_path.is_file():
        skip = _lines_done(output_path, n_best)
        print(f"resuming: {skip} inputs already translated in {output_path}", file=sys.stderr)
    lines = itertools.islice(read_source_lines(source, source_name), skip, None)
    done, t0 = skip, time.time()
    progress = tqdm(
        desc="translated",
        unit=" lines",
        initial=skip,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),  # a log file gets the summary line only
    )
    out = sink

    def open_output() -> TextIO:
        # Opened (and an earlier file replaced) only once there is something to write: an
        # input that fails before its first chunk is translated leaves the file as it was.
        output_path.parent.mkdir(parents=True, exist_ok=True)
        return open(output_path, "a" if resume else "w", encoding="utf-8")  # noqa: SIM115

    try:
        # Two chunks in flight: while one is in the search (TensorFlow releases the GIL), the
        # other is tokenised, batched or detokenised, so both cores stay busy. Outputs are
        # written in input order.
        # A bad input line ends the reading, not the chunks before it: they are written first.
        pending: collections.deque = collections.deque()
        bad_input: CorpusError | None = None
        with concurrent.futures.ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
            while True:
                while len(pending) < IN_FLIGHT and bad_input is None:
                    try:
                        chunk = list(itertools.islice(lines, chunk_lines))
                    except CorpusError as e:
                        bad_input = e
                        break
                    if not chunk:
                        break
                    pending.append(
                        pool.submit(_translate_chunk, translator, chunk, options, n_best)
                    )
                if not pending:
                    break
                results = pending.popleft().result()
                if out is None:
                    out = open_output()
                out.write("".join(_format(r, done + i, n_best) for i, r in enumerate(results)))
                out.flush()
                done += len(results)
                progress.update(len(results))
        if bad_input is not None:
            raise bad_input
        if output_path is not None:
            if out is None:  # an empty input: an empty output
                out = open_output()
            out.close()
    except OSError as e:
        raise OutputError(
            f"{name}: cannot write the translations ({e.strerror or e}); it holds the first "
            f"{done} complete inputs only"
        ) from None
    except CorpusError as e:
        if output_path is not None and out is None:
            raise CorpusError(f"{e}; nothing was written, {name} is as it was") from None
        hint = " (fix the input, then rerun with --resume)" if output_path is not None else ""
        raise CorpusError(
            f"{e}; the {done} lines before it are translated in {name}{hint}"
        ) from None
    finally:
        progress.close()
        if output_path is not None and out is not None and not out.closed:
            with contextlib.suppress(OSError):
                out.close()
    seconds = max(time.time() - t0, 1e-9)
    print(
        f"translated {done} lines ({done - skip} in {seconds:.1f} s, "
        f"{(done - skip) / seconds:.1f} lines/s)",
        file=sys.stderr,
    )
    return 0
