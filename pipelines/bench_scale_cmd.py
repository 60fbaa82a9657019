"""`translator bench-scale`: wall time and peak memory (RSS) of prepare, tokenize and N training
steps for each config, each stage a subprocess in a fresh run directory
(`translator.scale_bench`)."""

from __future__ import annotations

import argparse
import sys

from translator.pipelines import argtypes
from translator.pipelines.jsonout import add_json_argument, emit_json


def add_bench_scale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG",
        help="experiment YAML files; the first is the reference of the memory ratios",
    )
    p.add_argument(
        "--train-steps",
        type=argtypes.positive_int,
        default=500,
        metavar="N",
        help="training steps measured (default 500): train.epochs=1, train.steps_per_epoch=N",
    )
    p.add_argument(
        "--run-root",
        metavar="DIR",
        help="write the run directories here, one per config, and keep them (default: a "
        "temporary directory, removed at the end)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value in every config, e.g. data.train=/data/synth5m.tsv",
    )
    add_json_argument(p, "print JSON (or write it to the given file)")


def cmd_bench_scale(args) -> int:
    from translator.scale_bench import BenchError, format_table, run_scale_bench

    quiet = args.json == "-"  # `--json` alone: only JSON on stdout, for `| jq`

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        results = run_scale_bench(
            args.configs,
            train_steps=args.train_steps,
            run_root=args.run_root,
            overrides=args.set or [],
            log=None if quiet else log,
        )
    except BenchError as e:
        print(f"translator: error: {e}", file=sys.stderr)
        return 1
    if not quiet:
        print(format_table(results), flush=True)
    emit_json(results, args.json)
    return 0
