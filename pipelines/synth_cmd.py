"""`translator synth-corpus`: write a synthetic parallel corpus (the bundled pairs repeated with
light noise) of any size, e.g. the 5M-pair corpus of configs/synthetic-5m.yaml."""

from __future__ import annotations

import argparse
import sys
import time

from translator.pipelines import argtypes

from translator.io import check_output_path

MAX_PAIRS = 1_000_000_000


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT.tsv", help="the TSV file to write (source<TAB>target)")
    p.add_argument(
        "--pairs",
        type=argtypes.number(int, maximum=MAX_PAIRS),
        default=5_000_000,
        metavar="N",
        help=f"pairs to write (default 5000000, at most {MAX_PAIRS:,}: about 60 GB)",
    )
    p.add_argument(
        "--seed", type=int, default=1, help="noise and order seed (default 1): same seed, same file"
    )
    p.add_argument("--force", action="store_true", help="replace OUT.tsv if it exists")


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from translator.data.synthetic import write_synthetic_corpus

    out = check_output_path(args.out, "OUT")
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists; give --force to replace it, or another OUT.tsv")
    t0 = time.time()
    with tqdm(
        total=args.pairs,
        desc="synth-corpus",
        unit=" pairs",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
    ) as bar:
        n = write_synthetic_corpus(out, args.pairs, seed=args.seed, progress=bar.update)
    size = out.stat().st_size / 1e6
    print(f"wrote {n} pairs ({size:.0f} MB) to {out} in {time.time() - t0:.0f} s")
    return 0
