"""File helpers: atomic writes keep links and write devices in place; output paths are checked
before the work."""

import os

import pytest

from translator.io import (
    OutputPathError,
    atomic_path,
    atomic_write_text,
    check_output_path,
    check_replaceable,
)


def test_an_atomic_write_through_a_link_writes_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    atomic_write_text(os.devnull, "into a device, in place")  # no temporary file in /dev
    with pytest.raises(OSError):
        atomic_write_text("/dev/full", "x")


def test_check_output_path(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert check_output_path(tmp_path / "new" / "out.txt", "--output") == tmp_path / "new/out.txt"
    check_output_path(tmp_path / "new-dir", "OUT_DIR", directory=True)
    with pytest.raises(OutputPathError, match="--output .* is a directory"):
        check_output_path(tmp_path, "--output")
    with pytest.raises(OutputPathError, match="OUT_DIR .* is a file; give a directory"):
        check_output_path(blocker, "OUT_DIR", directory=True)
    with pytest.raises(OutputPathError, match="is a file, not a directory"):
        check_output_path(blocker / "sub" / "out.txt", "--output")


def test_check_replaceable(tmp_path):
    run = tmp_path / "parent" / "run"
    run.mkdir(parents=True)
    with pytest.raises(OutputPathError, match="holds the run directory"):
        check_replaceable(tmp_path / "parent", "--output", run, lambda d: True)
    with pytest.raises(OutputPathError, match="holds the run directory"):
        check_replaceable(run, "--output", run, lambda d: True)
    other = tmp_path / "other"
    other.mkdir()
    check_replaceable(other, "--output", run, lambda d: False)  # empty: fine
    (other / "notes.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="not written by this command"):
        check_replaceable(other, "--output", run, lambda d: False)
    check_replaceable(other, "--output", run, lambda d: True)  # an earlier output


def test_an_atomic_write_that_fails_without_a_file_name_names_its_target(tmp_path):
    """A full disk under a writer that names no file (Keras' zip writer) still names the file."""
    import errno

    target = tmp_path / "model.keras"
    with pytest.raises(OSError) as e, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as e, atomic_path(target):
        raise OSError(errno.EACCES, "Permission denied", "/somewhere/else")
    assert e.value.filename == "/somewhere/else"  # a named file stays named


def test_ctrl_c_or_sigterm_during_a_keras_save_acts_once_the_save_is_whole(tmp_path):
    """Keras' saving catches every exception around a file it opens (a bare `except:`), so an
    interrupt landing there was swallowed and training went on; now it is held until the file is
    whole, then raised."""
    import signal

    import keras
    from translator.pipelines.cli import Terminated, _terminate

    from translator.models.saving import load_model, save_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    save = model.save
    sigint_handler = signal.getsignal(signal.SIGINT)
    for sig, expected in ((signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)):
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:

            def save_and_signal(path, sig=sig):
                os.kill(os.getpid(), sig)  # handled at once, in this (the main) thread
                save(path)

            model.save = save_and_signal
            path = tmp_path / f"m{sig}.keras"
            with pytest.raises(expected):
                save_model(model, path)
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert load_model(path).count_params() == model.count_params()
    assert signal.getsignal(signal.SIGINT) is sigint_handler


def test_a_write_removes_what_killed_writers_of_the_same_name_left(tmp_path):
    """Temporary files and directories carry their writer's process id; the next writer of the
    same name deletes those of processes that no longer run (a kill -9 left them for good
    before), and keeps a running writer's, other names', and names without a process id."""
    import subprocess
    import sys

    from translator.io import leftover_prefix, remove_dead_leftovers

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".out.txt.{dead}-abc.tmp.txt"
    stale_dir = tmp_path / f".out.txt.{dead}-d.tmp"
    partial = tmp_path / f".out.txt.partial-{dead}-e"
    running = tmp_path / f".out.txt.{os.getpid()}-x.tmp.txt"
    unknown = tmp_path / ".out.txt.x1y2.tmp.txt"
    other = tmp_path / f".other.txt.{dead}-abc.tmp.txt"
    for path in (stale, running, unknown, other):
        path.write_text("half")
    for path in (stale_dir, partial):
        path.mkdir()
        (path / "inside").write_text("x")
    atomic_write_text(tmp_path / "out.txt", "whole")
    assert (tmp_path / "out.txt").read_text() == "whole"
    assert not stale.exists() and not stale_dir.exists()
    assert running.exists() and unknown.exists() and other.exists() and partial.exists()
    remove_dead_leftovers(tmp_path, "out.txt", "partial-")  # an export's, the same way
    assert not partial.exists() and running.exists()
    assert leftover_prefix("out.txt") == f".out.txt.{os.getpid()}-"
