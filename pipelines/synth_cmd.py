"""`translator synth-corpus`: write a synthetic parallel corpus (the bundled pairs repeated with
light noise) of any size, e.g. the 5M-pair corpus of configs/synthetic-5m.yaml."""

from __future__ import annotations

import argparse
import sys
import time

from translator.pipelines import argtypes

from translator.io import check_output_path


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT.tsv", help="the TSV file to write (source<TAB>target)")
    p.add_argument(
        "--pairs",
        type=argtypes.positive_int,
        default=5_000_000,
        metavar="N",
        help="pairs to write (default 5000000)",
    )
    p.add_argument(
        "--seed", type=int, default=1, help="noise and order seed (default 1): same seed, same file"
    )


def cmd_synth(args) -> int:
    from tqdm import tqdm

    from translator.data.synthetic import write_synthetic_corpus

    out = check_output_path(args.out, "OUT")
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
