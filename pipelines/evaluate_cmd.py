"""`translator evaluate` and `translator plot`: thin command-line layers over translator.evaluation.

translator evaluate RUN_DIR [RUN_DIR ...] [--test NAME=FILE ...] [--beam-size N ...] ...
    (a RUN_DIR may be RUN_A+RUN_B: an ensemble, evaluated as one system)
translator evaluate CONFIG [--run-dir DIR]        (runs the `evaluate` stage)
translator plot RUN_DIR [RUN_DIR ...] --output FILE.png
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from translator.pipelines.argtypes import add_xla_argument, number

from translator.io import check_not_an_input, check_output_path
from translator.rundir import RunDir

DEFAULT_OUTPUT_DIR = "evaluation"


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from translator.evaluation.significance import DEFAULT_BOOTSTRAP, DEFAULT_SEED, MAX_BOOTSTRAP

    p.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories to evaluate (the first is the baseline of the significance tests); "
        "RUN_A+RUN_B is an ensemble of runs that share their tokenizers, one system; or one CONFIG "
        "file, which runs the evaluate stage",
    )
    p.add_argument(
        "--test",
        action="append",
        metavar="NAME=FILE",
        help="a test set: NAME=FILE.tsv (source<TAB>reference), NAME=SRC_FILE,REF_FILE (aligned text "
        "files) or a bare FILE (named by its stem); repeatable (default: each run's data/test.tsv)",
    )
    p.add_argument(
        "--beam-size",
        type=int,
        nargs="+",
        metavar="N",
        help="beam sizes to evaluate, e.g. --beam-size 1 5 (1 = greedy; default from each run's config)",
    )
    p.add_argument(
        "--length-penalty", type=float, help="length penalty alpha (default from the config)"
    )
    p.add_argument(
        "--word-reward",
        type=float,
        help="beam search's bonus per output token (default from the config)",
    )
    p.add_argument("--batch-size", type=int, help="sentences per batch (default from the config)")
    add_xla_argument(p)
    p.add_argument(
        "--metrics", default="bleu,chrf,ter", help="comma-separated: bleu, chrf, ter (default: all)"
    )
    p.add_argument(
        "--output-dir",
        help=f"where results.json, results.csv, hypotheses, sentence scores and plots go "
        f"(default: ./{DEFAULT_OUTPUT_DIR})",
    )
    p.add_argument(
        "--worst", type=int, default=0, metavar="K", help="print the K worst sentences of each row"
    )
    p.add_argument(
        "--bootstrap",
        type=number(int, minimum=0, maximum=MAX_BOOTSTRAP),
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help=f"paired bootstrap resamples against the first model (default {DEFAULT_BOOTSTRAP}; 0 = off)",
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"resampling seed (default {DEFAULT_SEED})"
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="translate again instead of reusing cached hypotheses",
    )
    stage = p.add_argument_group("stage form (evaluate CONFIG)")
    stage.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    stage.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value"
    )
    stage.add_argument("--force", action="store_true", help="rerun even when up to date")


# Options of the run-directory form that the stage form (`evaluate CONFIG`) has no use for.
RUN_DIRECTORY_OPTIONS = ("test", "metrics", "output_dir", "worst", "bootstrap", "seed", "no_cache")
# And the stage form's, which the run-directory form has no use for.
STAGE_OPTIONS = ("run_dir", "set", "force")


def _options_given(args, dests: tuple[str, ...]) -> list[str]:
    """The flags among `dests` that `args` sets to other than their defaults."""
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    defaults = parser.parse_args(["RUN_DIR"])
    return [
        f"--{dest.replace('_', '-')}"
        for dest in dests
        if getattr(args, dest) != getattr(defaults, dest)
    ]


def run_directory_options_given(args) -> list[str]:
    """The flags of `RUN_DIRECTORY_OPTIONS` that `args` sets to other than their defaults."""
    return _options_given(args, RUN_DIRECTORY_OPTIONS)


def stage_options_given(args) -> list[str]:
    """The flags of `STAGE_OPTIONS` (`--run-dir`, `--set`, `--force`) that `args` sets."""
    return _options_given(args, STAGE_OPTIONS)


def is_stage_form(args) -> bool:
    """`evaluate CONFIG`: a YAML file (or any file) as the only target runs the evaluate stage."""
    first = Path(args.targets[0])
    if first.suffix in (".yaml", ".yml") or first.is_file():
        if len(args.targets) > 1:
            raise ValueError(
                f"evaluate {first}: a config file runs the evaluate stage of one run; "
                "to compare runs, give their run directories"
            )
        return True
    return False


def _refuse_outputs_over_inputs(output_dir: Path, targets: list, test_specs: list[str]) -> None:
    """Before any work: --output-dir may not be inside a run being evaluated (its evaluate stage
    owns eval/, and its cache would then describe other files), and no input test file may lie
    in it under a name of the outputs (it would be overwritten, e.g. `x.hyp.txt`)."""
    from translator.evaluation.report import OUTPUT_SUFFIXES, RESULT_FILES

    out = output_dir.resolve()
    for target in targets:
        for run in target if isinstance(target, list) else [target]:
            run_path = Path(run).resolve()
            owned = RunDir(run_path).eval_dir.resolve()
            if out in (run_path, owned) or owned in out.parents:
                raise ValueError(
                    f"--output-dir {output_dir} is the run directory {run} or its eval/, which "
                    "the run's evaluate stage owns (it would no longer describe its files); "
                    "give another directory, e.g. the default evaluation/"
                )
    for spec in test_specs:
        for part in re.split(r"[=,]", spec):
            path = Path(part.strip())
            if not part.strip() or not path.is_file() or path.resolve().parent != out:
                continue
            if path.name in RESULT_FILES or path.name.endswith(OUTPUT_SUFFIXES):
                raise ValueError(
                    f"--test {spec}: {path} is in --output-dir {output_dir} under a name the "
                    "evaluation writes (results.*, *.hyp.txt, *.scores.json, *.sentences.tsv, "
                    "*.bleu-by-length.png); give another --output-dir"
                )


def run_evaluate(args) -> int:
    from translator.pipelines.cli import _ensemble_members

    from translator.evaluation.evaluator import evaluate
    from translator.evaluation.report import format_signatures, format_table, format_worst

    if args.worst < 0:
        raise ValueError(f"--worst must be 0 or more, got {args.worst}")
    output_dir = check_output_path(
        args.output_dir or DEFAULT_OUTPUT_DIR, "--output-dir", directory=True
    )
    # RUN_A+RUN_B: one system, the ensemble of the runs (a list of run directories).
    targets = [members if len(members := _ensemble_members(t)) > 1 else t for t in args.targets]
    _refuse_outputs_over_inputs(output_dir, targets, args.test or [])
    rows = evaluate(
        targets,
        test_sets=args.test or None,
        beam_sizes=args.beam_size,
        metrics=args.metrics,
        length_penalty=args.length_penalty,
        word_reward=args.word_reward,
        batch_size=args.batch_size,
        xla=args.xla,
        bootstrap=args.bootstrap,
        seed=args.seed,
        output_dir=output_dir,
        cache=not args.no_cache,
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    print()
    print(format_signatures(rows))
    if args.worst:
        print()
        print(format_worst(rows, args.worst))
    print(
        f"\nwrote {output_dir / 'results.json'}, {output_dir / 'results.csv'} and per-row files in {output_dir}/"
    )
    sys.stdout.flush()
    return 0


def add_plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run directories with logs/metrics.csv"
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE.png",
        help="the image to write; its suffix gives the format (.png, .pdf, .svg, ...)",
    )


def run_plot(args) -> int:
    from translator.plots import figure_format, plot_runs

    out = check_output_path(args.output, "--output")
    check_not_an_input(out, [RunDir(r).metrics_log for r in args.run_dirs])
    figure_format(out, "--output")
    path = plot_runs(args.run_dirs, args.output)
    print(f"wrote {path}")
    return 0
