"""Small file helpers: atomic writes (temporary name, then rename) and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class ArtifactError(ValueError):
    """A file of a run directory exists but cannot be used; the message names it, says what is
    wrong with it and what to do."""


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    The temporary file is `.<name>.<random>.tmp<suffix>` (`suffix`: `path`'s own by default;
    Keras' `save_weights` needs `.weights.h5`); :func:`atomic_leftovers` finds those a killed
    process left. If the body raises, the temporary file is removed and `path` is untouched.

    A symbolic link stays a link: its target is written. A device or a pipe (`/dev/stdout`,
    `/dev/null`) is written in place: there is no file to replace.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        yield path
        return
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_leftovers(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(
        prefix=leftover_prefix(path.name),
        suffix=".tmp" + (path.suffix if suffix is None else suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file private (0600); give it the permissions of a normal new file.
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except OSError as e:
        if e.errno is None or e.filename is not None:
            raise
        # A writer that names no file (e.g. a full disk under Keras' zip writer): name `path`.
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def signal_handlers(handler: Any) -> Iterator[dict | None]:
    """SIGINT and SIGTERM go to `handler` (a function, or `signal.SIG_DFL`) for the block, then
    to their previous handlers again. Yields those previous handlers; or None, changing nothing,
    where they cannot be changed: outside the main thread (the only one Python's handlers run
    in), or where a handler was not set from Python (it could not be put back)."""
    sigs = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = {sig: signal.getsignal(sig) for sig in sigs}
    if any(h is None for h in previous.values()):
        yield None
        return
    for sig in sigs:
        signal.signal(sig, handler)
    try:
        yield previous
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then act on the first that came
    (its own handler: `KeyboardInterrupt`, the CLI's `Terminated`).

    For library calls that catch every exception: Keras' saving and loading wrap a file open in a
    bare `except:` and fall back to another way, so an interrupt that lands there is swallowed and
    a run asked to stop trains on. Only the main thread receives Python's signal handlers: in
    another thread, or where a handler was not set from Python, this does nothing."""
    caught: list[tuple[int, Any]] = []
    previous = None
    try:
        with signal_handlers(lambda signum, frame: caught.append((signum, frame))) as previous:
            yield
    finally:
        if caught and previous:
            signum, frame = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def current_umask() -> int:
    """The process's umask (read by setting it and back: there is no getter), for giving a file
    or directory made private by `tempfile` the permissions a plain `open` or `mkdir` gives."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def leftover_prefix(name: str, kind: str = "") -> str:
    """The name start of a temporary file or directory written for `name` by this process:
    `.<name>.<kind><pid>-` (the process id lets a later writer of `name` find what a killed one
    left, see :func:`remove_dead_leftovers`)."""
    return f".{name}.{kind}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no way to tell: leave its files alone
        return True
    return True


def remove_dead_leftovers(directory: Path, name: str, kind: str = "") -> None:
    """Delete the temporary files and directories that writers of `name` (see
    :func:`leftover_prefix`) left in `directory` when they were killed: those whose process no
    longer runs. Another running writer's are kept; so are names without a process id."""
    start = f".{name}.{kind}"
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(start) :] if entry.name.startswith(start) else ""
        pid, dash, _ = rest.partition("-")
        if not dash or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def atomic_leftovers(directory: Path, name: str = "*") -> list[Path]:
    """The temporary files of :func:`atomic_path` in `directory` (for files called `name`, a
    glob pattern) that a killed process left behind; they are never read."""
    return sorted(directory.glob(f".{name}.*.tmp*"))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | Path, what_to_do: str = "delete it or restore it from a backup") -> Any:
    """The JSON in `path`; `ArtifactError` naming the file if it is not readable JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt (not readable JSON: {e}); {what_to_do}") from None


def fingerprint(*parts: Any) -> str:
    """A stable short hash of JSON-serialisable parts (dicts are key-sorted)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (short)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class OutputPathError(ValueError):
    """An output path that cannot be written (a directory where a file goes, a file where a
    directory goes, an unwritable place) or must not be replaced; the message names it."""


def check_output_path(path: str | Path, what: str, *, directory: bool = False) -> Path:
    """Check, before any work, that `path` can be written as a file (or, with `directory`, as a
    directory): it is not the other kind, the nearest existing parent is a writable directory.

    Args:
        path: the output path.
        what: how the user gave it, for messages (e.g. `"--output"`, `"OUT_DIR"`).
        directory: the output is a directory.

    Returns:
        `path` as a `Path`.

    Raises:
        OutputPathError: naming `what` and the path.
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise OutputPathError(f"{what} {path} is a file; give a directory")
        if not directory and path.is_dir():
            raise OutputPathError(f"{what} {path} is a directory; give a file name")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{what} {path}: {parent} is a file, not a directory")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK) or (target.is_dir() and not os.access(target, os.X_OK)):
        raise OutputPathError(f"{what} {path}: {target} is not writable")
    return path


def check_replaceable(
    out: str | Path, what: str, protected: Path, is_own: Callable[[Path], bool]
) -> None:
    """Refuse to replace (`--force`) a directory that holds `protected` (the run an output is
    made from), or one that is neither empty nor an earlier output of the same command.

    Args:
        out: the output directory about to be replaced.
        what: how the user gave it (e.g. `"OUT_DIR"`, `"--output"`).
        protected: a path that must survive (e.g. the source run directory).
        is_own: `is_own(out) -> bool`: `out` is an earlier output of this command.

    Raises:
        OutputPathError: naming `what` and the path.
    """
    out, protected = Path(out).resolve(), Path(protected).resolve()
    if out == protected or out in protected.parents:
        raise OutputPathError(
            f"{what} {out} holds the run directory {protected}; replacing it would delete the "
            "run: give another directory"
        )
    if out.is_dir() and any(out.iterdir()) and not is_own(out):
        raise OutputPathError(
            f"{what} {out} is not empty and was not written by this command; --force replaces "
            "only an earlier output: give another directory, or remove it yourself"
        )


def unicode_problem(text: str) -> tuple[int, str] | None:
    """None when `text` is Unicode text that UTF-8 can encode; else `(index, escape)` of its
    first lone surrogate (`\\ud800`-`\\udfff` not in a high-low pair): what a JSON `\\ud800`
    escape, or a non-UTF-8 byte decoded with `surrogateescape` (command-line arguments), gives."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start, f"\\u{ord(text[e.start]):04x}"
    return None


def check_not_an_input(output: str | Path, inputs: list, what: str = "--output") -> None:
    """Refuse an output file that is one of the command's input files (the same file by any
    path or link): writing it would erase the input before it is read.

    Raises:
        OutputPathError: naming both.
    """
    for f in inputs:
        try:
            same = os.path.samefile(f, output)
        except OSError:  # one of them does not exist (yet), or is a pipe that went away
            continue
        if same:
            raise OutputPathError(
                f"{what} {output} is the input file {f}; writing it would erase the input: "
                "give another output file"
            )


def shown(text: str) -> str:
    """`text` for a message: a byte that is not UTF-8 (a lone surrogate from `surrogateescape`)
    as `\\xff`, another lone surrogate as `\\ud800`."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()


def require_utf8_path(path: str | Path, what: str) -> None:
    """Refuse a path that is not UTF-8 text (a Linux name may hold any bytes), for paths that
    TensorFlow or SentencePiece open: they take UTF-8 paths and fail deep inside with an encoding
    error.

    Raises:
        OutputPathError: naming `what`, the path and the byte.
    """
    problem = describe_unicode_problem(str(path))
    if problem is not None:
        raise OutputPathError(
            f"{what} {shown(str(path))} is not a UTF-8 path ({problem}); TensorFlow and "
            "SentencePiece open files by UTF-8 paths: give a directory whose path is UTF-8"
        )


def describe_unicode_problem(text: str) -> str | None:
    """None, or where `text` stops being UTF-8 text, as a user would see it: `byte 0xff at
    character 3` for a command-line byte that is not UTF-8 (decoded with `surrogateescape`),
    `\\ud800 at character 3` for a lone surrogate otherwise."""
    problem = unicode_problem(text)
    if problem is None:
        return None
    at, char = problem
    code = ord(text[at])
    what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else char
    return f"{what} at character {at + 1}"
