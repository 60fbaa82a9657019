"""The run directory is trustworthy: one writer at a time, a config that matches its artifacts,
names that stay inside runs/ (through the CLI, as a user meets them: in a subprocess where a second
process is the point, else `main` in this process)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import yaml

from translator.rundir import RunDir

from ..conftest import TINY
from .helpers import cli, run_main

HOLD = """
import sys, time
from translator.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def _hold_lock(run_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    holder = _hold_lock(run_dir)
    try:
        t0 = time.time()
        r = cli("prepare", TINY, "--run-dir", run_dir)
        assert r.returncode == 2, r.stderr
        assert str(run_dir) in r.stderr and f"PID {holder.pid}" in r.stderr
        assert "Traceback" not in r.stderr and time.time() - t0 < 60
        assert not (run_dir / "data").exists()  # nothing was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 released the lock: the next writer gets it.
    with RunDir(run_dir).lock():
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())


def test_config_is_written_only_with_the_artifacts_it_describes(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = (run_dir / "config.yaml").read_text()
    # A stage that is skipped, or runs on other sections, must not change what config.yaml says
    # about the tokenizers and the model.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "prepare", "--set", "tokenizer.type=word"
    )
    assert r.returncode == 0, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    r = run_main("translate", run_dir, "Das Haus ist alt.")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    # A skipped stage (the model is up to date with the tokenizers it was trained on) and a stage
    # that fails write nothing either.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "train", "--set", "tokenizer.type=word"
    )
    assert r.returncode == 0 and "skipped" in r.stdout, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    missing = tmp_path / "missing.tsv"
    overrides = ["--set", "data.corpus=tsv", "--set", f"data.train={missing}"]
    r = run_main("run", TINY, "--run-dir", run_dir, "--stages", "prepare", *overrides)
    assert r.returncode == 2 and str(missing) in r.stderr, r.stderr
    assert (run_dir / "config.yaml").read_text() == before
    # A stage that runs records its own sections only.
    r = run_main(
        "run", TINY, "--run-dir", run_dir, "--stages", "evaluate", "--set", "decode.beam_size=2"
    )
    assert r.returncode == 0, r.stderr
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["decode"]["beam_size"] == 2 and saved["tokenizer"]["type"] == "sentencepiece"


def test_config_names_cannot_leave_runs(tmp_path):
    for name in ("../../escape", "/tmp/escape", "a/../../b", "~/escape", ""):
        config = tmp_path / "c.yaml"
        config.write_text(TINY.read_text() + f"\nname: {name!r}\n")
        r = run_main("prepare", config, cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        assert "name" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
    # An explicit --run-dir is the user's choice.
    r = run_main("prepare", TINY, "--run-dir", tmp_path / "elsewhere")
    assert r.returncode == 0, r.stderr
