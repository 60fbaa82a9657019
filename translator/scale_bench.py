"""Scale benchmark: wall time and peak resident memory (RSS) of `prepare`, `tokenize` and a
bounded number of training steps, per config, each stage a `translator` subprocess writing a fresh
run directory.

A stage's peak RSS is the kernel's high-water mark of its process (`ru_maxrss` of `os.wait4` on
that one child, which also covers any processes it waited for), so the stages of one config and
the configs are measured apart. Training is bounded with `train.epochs=1` and
`train.steps_per_epoch=N` (the epoch then ends with the usual validation loss and BLEU).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from translator.config import load_config

STAGES = ("prepare", "tokenize", "train")


class BenchError(RuntimeError):
    """A stage failed; the message names it and ends with its log's last lines."""


def run_measured(cmd: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Run `cmd` with its output appended to `log_path`; its wall time, peak RSS and exit code."""
    t0 = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": round(time.perf_counter() - t0, 2),
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / 1e6, 1),
        "returncode": proc.returncode,
    }


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def bench_config(
    config: str | Path,
    run_dir: Path,
    train_steps: int,
    overrides: list[str] | None = None,
    log=None,
) -> dict:
    """Measure the stages of one config into `run_dir` (which must not hold a run yet)."""
    overrides = list(overrides or [])
    cfg = load_config(config, overrides)  # a bad config fails here, before anything runs
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # Beside the run directory: a stage refuses a non-empty directory that is not a run yet.
    log_path = run_dir.parent / f"{run_dir.name}.bench-scale.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TRANSLATOR_VERBOSE", None)
    stages = []
    for stage in STAGES:
        sets = list(overrides)
        if stage == "train":
            sets += ["train.epochs=1", f"train.steps_per_epoch={train_steps}"]
        cmd = [sys.executable, "-m", "translator.pipelines.cli", stage, str(config)]
        cmd += ["--run-dir", str(run_dir)]
        for s in sets:
            cmd += ["--set", s]
        if log:
            log(f"[bench-scale] {cfg.name}: {stage} ...")
        measure = run_measured(cmd, log_path, env)
        if measure["returncode"] != 0:
            raise BenchError(
                f"{config}: `translator {stage}` failed (exit {measure['returncode']}); "
                f"the end of {log_path}:\n{_tail(log_path)}"
            )
        stages.append({"stage": stage, **measure})
        if log:
            log(
                f"[bench-scale] {cfg.name}: {stage} {measure['seconds']:.1f} s, "
                f"peak RSS {measure['peak_rss_mb']:.0f} MB"
            )
    pairs = None
    stats = run_dir / "data" / "stats.json"
    if stats.is_file():
        import json

        pairs = json.loads(stats.read_text(encoding="utf-8")).get("train_pairs")
    return {
        "config": str(config),
        "name": cfg.name,
        "train_pairs": pairs,
        "train_steps": train_steps,
        "stages": stages,
        "seconds": round(sum(s["seconds"] for s in stages), 2),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages),
    }


def run_scale_bench(
    configs: list[str | Path],
    train_steps: int = 500,
    run_root: str | Path | None = None,
    overrides: list[str] | None = None,
    keep: bool = False,
    log=None,
) -> dict:
    """`bench_config` for each config, in a fresh run directory under `run_root` (default: a
    temporary directory, removed at the end unless `keep`); the results with each config's peak
    RSS as a ratio of the first config's."""
    for config in configs:
        load_config(config, overrides)  # every config is checked before the first one runs
    temporary = run_root is None
    root = Path(tempfile.mkdtemp(prefix="bench-scale-") if temporary else run_root)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for i, config in enumerate(configs):
            name = load_config(config, overrides).name
            run_dir = root / f"{i + 1}-{name}"
            if run_dir.exists() and any(run_dir.iterdir()):
                raise BenchError(f"{run_dir} already exists; give another --run-root")
            results.append(bench_config(config, run_dir, train_steps, overrides, log))
    finally:
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
    first = results[0]["peak_rss_mb"]
    for r in results:
        r["peak_rss_ratio"] = round(r["peak_rss_mb"] / first, 3)
    return {
        "train_steps": train_steps,
        "run_root": None if temporary and not keep else str(root),
        "configs": results,
    }


def format_table(results: dict) -> str:
    """The results as text: a table (stage, seconds, peak RSS) per config, then the ratios."""
    out = []
    for r in results["configs"]:
        pairs = f", {r['train_pairs']:,} training pairs" if r["train_pairs"] is not None else ""
        out.append(f"{r['config']} ({r['name']}{pairs}; train: {r['train_steps']} steps)")
        out.append(f"  {'stage':<10} {'seconds':>9} {'peak RSS MB':>12}")
        for s in r["stages"]:
            out.append(f"  {s['stage']:<10} {s['seconds']:>9.1f} {s['peak_rss_mb']:>12.0f}")
        out.append(f"  {'all':<10} {r['seconds']:>9.1f} {r['peak_rss_mb']:>12.0f}")
        out.append("")
    configs = results["configs"]
    if len(configs) > 1:
        base = configs[0]
        for r in configs[1:]:
            out.append(
                f"peak RSS {r['name']} / {base['name']}: {r['peak_rss_ratio']:.2f} "
                f"({r['peak_rss_mb']:.0f} MB / {base['peak_rss_mb']:.0f} MB)"
            )
    return "\n".join(out).rstrip("\n")
