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


def _resume_point(path: Path, n_best: int) -> tuple[int, int]:
    """`(inputs, size)`: the complete inputs an output file holds and the bytes they take (a
    trailing partial line, or an input with fewer than `n_best` lines, is not complete).

    Raises:
        CorpusError: naming the file and line, when it is not an output of `translate` with
            these options (not UTF-8, or not `INDEX<TAB>SCORE<TAB>HYPOTHESIS` lines with n-best).
    """
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    again = "; it is not an output of translate with these options: give another --output"
    try:
        lines = [line + "\n" for line in whole.decode("utf-8").split("\n")[:-1]]
    except UnicodeDecodeError as e:
        line = whole[: e.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: not UTF-8{again}") from None
    if n_best == 1:
        return len(lines), len(whole)
    last, count = -1, 0  # the input of the lines read so far, and its lines
    size = before_last = 0  # bytes read, and bytes of the inputs before `last`
    for lineno, line in enumerate(lines, start=1):
        fields = line.split("\t", 2)
        try:
            if len(fields) < 3:
                raise ValueError
            index, _ = int(fields[0]), float(fields[1])
        except ValueError:
            raise CorpusError(
                f"{path}:{lineno}: expected INDEX<TAB>SCORE<TAB>HYPOTHESIS (--n-best {n_best})"
                f"{again}"
            ) from None
        if index == last + 1:
            before_last, count = size, 1
        elif index == last >= 0 and count < n_best:
            count += 1
        else:  # inputs in order, each with at most n_best lines together
            after = f"after {last}" if last >= 0 else "first"
            raise CorpusError(f"{path}:{lineno}: input index {index} {after}{again}")
        last = index
        size += len(line.encode("utf-8"))
    if count < n_best and last >= 0:  # the last input is not whole
        return last, before_last
    return last + 1, size


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
    lines = read_source_lines(source, source_name)
    if output_path is not None and resume and output_path.is_file():
        skip, size = _resume_point(output_path, n_best)
        read = sum(1 for _ in itertools.islice(lines, skip))
        if read < skip:
            raise CorpusError(
                f"{output_path} holds {skip} translated inputs but {source_name} has only "
                f"{read} lines: it is not a partial translation of this input; give another "
                "--output, or drop --resume to replace it"
            )
        if size < output_path.stat().st_size:  # a partial last line or input: translated again
            with open(output_path, "r+b") as f:
                f.truncate(size)
        print(f"resuming: {skip} inputs already translated in {output_path}", file=sys.stderr)
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
        # Not `with`: on Ctrl-C the chunks in flight are not waited for (their results would be
        # dropped anyway; `--resume` translates them again).
        pool = concurrent.futures.ThreadPoolExecutor(
            IN_FLIGHT, thread_name_prefix="translator-chunk"
        )
        try:
            while True:
                while len(pending) < IN_FLIGHT and bad_input is None:
                    chunk = []
                    try:
                        for line in itertools.islice(lines, chunk_lines):
                            chunk.append(line)
                    except CorpusError as e:  # the lines read before it are still translated
                        bad_input = e
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
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if bad_input is not None:
            raise bad_input
        if output_path is not None:
            if out is None:  # an empty input: an empty output
                out = open_output()
            out.close()
    except OSError as e:
        raise OutputError(
            f"{name}: cannot write the translations ({e.strerror or e}); the first {done} "
            "inputs are complete in it (and perhaps part of the next chunk)"
            + ("; free the space, then rerun with --resume" if output_path is not None else "")
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
