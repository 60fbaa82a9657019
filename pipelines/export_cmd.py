"""`translator export RUN_DIR OUT_DIR`: a string -> string SavedModel of a trained run."""

from __future__ import annotations

import argparse
import sys


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory with a trained model")
    p.add_argument("out_dir", help="the SavedModel directory to write")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    group = p.add_argument_group("decoding fixed in the export (default: the run's decode section)")
    group.add_argument("--beam-size", type=int, help="beam size (1 = greedy)")
    group.add_argument("--n-best", type=int, help="hypotheses of translate_nbest (<= beam size)")
    group.add_argument("--length-penalty", type=float, help="length penalty alpha (0 = none)")
    group.add_argument(
        "--word-reward", type=float, help="beam search's bonus per output token (0 = none)"
    )
    group.add_argument(
        "--max-output-ratio", type=float, help="maximum output tokens per source token"
    )
    group.add_argument("--max-output-extra", type=int, help="extra output tokens allowed")
    group.add_argument("--min-output-length", type=int, help="no EOS before this many tokens")
    group.add_argument("--batch-size", type=int, help="sentences decoded together")
    group.add_argument(
        "--workers", type=int, help="batches (greedy: windows) the graph decodes at once"
    )
    p.add_argument(
        "--check",
        nargs="?",
        const="test",
        metavar="SPLIT|FILE",
        help="after exporting, load the export stand-alone (TensorFlow and tensorflow-text only) "
        "and compare it with the Python API on the run's test split (or the named split, or a "
        "file of sentences): exit 1 unless every translation is equal",
    )


OPTIONS = (
    "beam_size",
    "n_best",
    "length_penalty",
    "word_reward",
    "max_output_ratio",
    "max_output_extra",
    "min_output_length",
    "batch_size",
    "workers",
)


def _name_the_flag(message: str, options: dict) -> str:
    """`decode.beam_size: ...` as `--beam-size (decode.beam_size): ...` when the value came
    from that flag (a value from the run's config keeps the config key alone)."""
    for key, value in options.items():
        if value is not None and message.startswith(f"decode.{key}:"):
            config_key, _, reason = message.partition(":")
            return f"--{key.replace('_', '-')} ({config_key}):{reason}"
    return message


def _check_sentences(run_dir: str, what: str) -> list[str]:
    from pathlib import Path

    from translator.data.corpus import read_lines, read_tsv
    from translator.rundir import SPLITS, RunDir

    if what in SPLITS:
        return [p.src for p in read_tsv(RunDir(run_dir).split(what))]
    if not Path(what).is_file():
        raise FileNotFoundError(
            f"--check: {what} is neither a split ({', '.join(SPLITS)}) nor a file"
        )
    sentences = read_lines(what)
    if not any(s.strip() for s in sentences):
        raise ValueError(f"--check: {what} has no sentences; a check of nothing would pass")
    return sentences


def cmd_export(args) -> int:
    from translator.export import ExportError, check_export, export_run, read_export_info

    sentences = _check_sentences(args.run_dir, args.check) if args.check else None
    options = {key: getattr(args, key) for key in OPTIONS}
    try:
        out = export_run(args.run_dir, args.out_dir, force=args.force, **options)
    except ExportError as e:
        raise ExportError(_name_the_flag(str(e), options)) from None
    d = read_export_info(out)["decode"]
    search = "greedy search" if d["beam_size"] == 1 else f"beam search (beam {d['beam_size']})"
    print(f"exported {args.run_dir} to {out}")
    print(
        f"  {search}, length penalty {d['length_penalty']}, "
        f"word reward {d.get('word_reward', 0.0)}, at most "
        f"ceil({d['max_output_ratio']} x source tokens) + {d['max_output_extra']} output tokens"
    )
    print("  serving_default: text [N] string -> translation [N] string, score [N] float32")
    print(
        f"  translate_nbest: text [N] string -> hypotheses [N, {d['n_best']}] string, "
        f"scores [N, {d['n_best']}] float32"
    )
    print("  load it with: import tensorflow_text; tf.saved_model.load(...)")
    if sentences is not None:
        print(f"checking {len(sentences)} sentences ({args.check}) ...", flush=True)
        report = check_export(out, sentences, run_dir=args.run_dir)
        print(report.summary())
        for m in report.mismatches:
            print(f"  differs at {m['index']}: {m['source']!r}", file=sys.stderr)
            print(f"    python: {m['python']}\n    export: {m['export']}", file=sys.stderr)
        return 0 if report.passed else 1
    return 0
