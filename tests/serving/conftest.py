"""Fixtures of the serving tests: `translator serve` as a real subprocess on a free loopback
port, serving the session's tiny attention run (`tiny_attention_run`, tests/conftest.py)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_SECONDS = 120


@pytest.fixture(scope="session")
def api(tiny_attention_run):
    """The Python API on the same run, for the expected answers."""
    from translator.translate import Translator

    return Translator.load(tiny_attention_run)


@pytest.fixture(scope="session")
def sentences(tiny_attention_run) -> list[str]:
    """German sentences of the run's test split."""
    lines = (tiny_attention_run / "data" / "test.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in lines[:16]]


@dataclass
class Served:
    """A `translator serve` subprocess."""

    proc: subprocess.Popen
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self.proc.stdout.close()
        return self.proc.returncode


def start_server(path, *args, stderr_path: Path) -> Served:
    """Start `translator serve PATH --port 0 ...` and wait for its `serving on URL` line."""
    argv = [sys.executable, "-m", "translator.pipelines.cli", "serve", str(path), "--port", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    stderr = open(stderr_path, "wb")  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen(
        [*argv, *map(str, args)], stdout=subprocess.PIPE, stderr=stderr, env=env
    )
    stderr.close()
    served = Served(proc, "", Path(stderr_path))
    deadline = time.monotonic() + STARTUP_SECONDS
    line = b""
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            break
    text = line.decode().strip()
    if not text.startswith("serving on http://"):
        served.stop()
        raise AssertionError(
            f"the server did not start (first stdout line {text!r}):\n{served.stderr()}"
        )
    served.url = text.removeprefix("serving on ")
    return served


@pytest.fixture(scope="session")
def server(tiny_attention_run, tmp_path_factory):
    """`translator serve` on the attention run (stops by itself after 300 s at the latest)."""
    log = tmp_path_factory.mktemp("server") / "stderr.txt"
    served = start_server(tiny_attention_run, "--timeout", "300", stderr_path=log)
    yield served
    served.stop()


def request(url: str, path: str, body=None, *, raw: bytes | None = None, headers=None, timeout=60):
    """`(status, JSON answer)` of a GET (no body) or a POST of `body` as JSON (or `raw` bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if data is not None else {}
    sent.update(headers or {})
    req = urllib.request.Request(url + path, data=data, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())
