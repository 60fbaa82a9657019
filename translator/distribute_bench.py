"""`translator bench-distribute`: training tokens/s with `train.distribute` none, mirrored (two
logical CPU devices) and multi_worker (two local worker processes), side by side in one run.

On a machine with 2 cores the replicas share them, so the ratios show the overhead of each
strategy (synchronisation, input sharding), not a speed-up.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

# Each setting states both keys, so a config that sets either still runs all three.
SETTINGS = {
    "none": ["train.distribute=none", "train.cpu_devices=null"],
    "mirrored": ["train.distribute=mirrored", "train.cpu_devices=2"],
    "multi_worker": ["train.distribute=multi_worker", "train.cpu_devices=null"],
}


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "translator.pipelines.cli", *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(procs: list[subprocess.Popen], timeout: float) -> None:
    """Wait for the processes (each within `timeout` seconds); when one fails, times out or the
    wait is interrupted (Ctrl-C, SIGTERM), those still running are killed: a worker of
    `multi_worker` would otherwise wait for its peer forever."""
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(p.args)} failed:\n{err[-2000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def free_loopback_ports(n: int) -> list[int]:
    """`n` free TCP ports on 127.0.0.1 (for local worker processes)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _last_epoch(run: Path) -> dict:
    with open(run / "logs" / "metrics.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))[-1]


def run_distribute_benchmark(
    config: str, steps: int = 30, overrides: list[str] | None = None, timeout: float = 1800
) -> dict:
    """Prepare and tokenize `config` once, then train 2 epochs of `steps` steps with each
    setting; the second epoch's target tokens/s (the first includes tracing) of each, and the
    ratios to `none`."""
    sets = [f"train.steps_per_epoch={steps}", "train.epochs=2", *(overrides or [])]
    set_args = [a for s in sets for a in ("--set", s)]
    results: dict = {"config": config, "steps_per_epoch": steps}
    with tempfile.TemporaryDirectory(prefix="bench-distribute-") as tmp:
        base = Path(tmp) / "base"
        _wait([_cli("run", config, "--run-dir", str(base), "--stages", "prepare,tokenize",
                    *set_args)], timeout)  # fmt: skip
        for name, extra in SETTINGS.items():
            run = Path(tmp) / name
            subprocess.run(["cp", "-r", str(base), str(run)], check=True)
            args = ["train", config, "--run-dir", str(run), *set_args]
            args += [a for s in extra for a in ("--set", s)]
            if name == "multi_worker":
                workers = [f"127.0.0.1:{p}" for p in free_loopback_ports(2)]
                procs = [
                    _cli(
                        *args,
                        env={
                            "TF_CONFIG": json.dumps(
                                {
                                    "cluster": {"worker": workers},
                                    "task": {"type": "worker", "index": i},
                                }
                            )
                        },
                    )  # fmt: skip
                    for i in (0, 1)
                ]
            else:
                procs = [_cli(*args)]
            _wait(procs, timeout)
            row = _last_epoch(run)
            results[name] = {
                "target_tokens_per_s": float(row["train_tokens_per_s"]),
                "epoch_seconds": float(row["epoch_seconds"]),
            }
            print(f"{name:>13}: {results[name]}", file=sys.stderr, flush=True)
    for name in ("mirrored", "multi_worker"):
        results[f"{name}_vs_none"] = round(
            results[name]["target_tokens_per_s"] / results["none"]["target_tokens_per_s"], 3
        )
    return results
