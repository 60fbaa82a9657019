"""The `translator` command line: a thin layer over the stages and the library."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from translator.pipelines.argtypes import add_xla_argument, number, positive_int  # noqa: E402
from translator.pipelines.jsonout import add_json_argument, emit_json  # noqa: E402
from translator.pipelines.stages import STAGES, Context, StageError, run_stages  # noqa: E402

from translator.config import ConfigError, load_config  # noqa: E402
from translator.data.corpus import CorpusError  # noqa: E402
from translator.io import (  # noqa: E402
    check_not_an_input,
    check_output_path,
    describe_unicode_problem,
)
from translator.rundir import RunDirBusyError  # noqa: E402
from translator.translate_file import OutputError  # noqa: E402

USER_ERRORS = (
    ConfigError,
    CorpusError,
    StageError,
    RunDirBusyError,
    OutputError,
    FileNotFoundError,
    ValueError,
)


def _context(args) -> Context:
    config = load_config(args.config, overrides=args.set or [])
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config.name
    check_output_path(run_dir, "--run-dir" if args.run_dir else "the run directory", directory=True)
    return Context(config=config, run_dir=run_dir, force=args.force)


def cmd_run(args) -> int:
    ctx = _context(args)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not stages:
        raise ConfigError(f"--stages: no stage given; valid choices: {', '.join(STAGES)}")
    for s in stages:
        if s not in STAGES:
            raise ConfigError(f"--stages: unknown stage {s!r}; valid choices: {', '.join(STAGES)}")
    print(f"run directory: {ctx.run_dir}", flush=True)
    run_stages(ctx, stages)
    return 0


def cmd_stage(args) -> int:
    run_stages(_context(args), [args.command])
    return 0


def _decode_options(args) -> dict:
    return {
        "beam_size": args.beam_size,
        "n_best": getattr(args, "n_best", None),
        "length_penalty": args.length_penalty,
        "word_reward": getattr(args, "word_reward", None),
        "batch_size": args.batch_size,
        "sampling_topk": getattr(args, "sampling_topk", None),
        "sampling_temperature": getattr(args, "sampling_temperature", None),
        "xla": getattr(args, "xla", None),
        "workers": getattr(args, "workers", None),
    }


def cmd_evaluate(args) -> int:
    from translator.pipelines.evaluate_cmd import (
        is_stage_form,
        run_directory_options_given,
        run_evaluate,
        stage_options_given,
    )

    if is_stage_form(args):
        ignored = run_directory_options_given(args)
        if ignored:
            raise ConfigError(
                f"{', '.join(ignored)}: not options of the evaluate stage (`evaluate CONFIG` "
                "scores the run's test split with the config's eval section, into RUN_DIR/eval); "
                "evaluate the run directory instead: translator evaluate RUN_DIR "
                f"{' '.join(ignored)} ..."
            )
        args.config = args.targets[0]
        # Decoding options on the command line override the config's decode section.
        if args.beam_size and len(args.beam_size) > 1:
            raise ConfigError("the evaluate stage takes one --beam-size; give several with RUN_DIR")
        given = {
            "beam_size": args.beam_size[0] if args.beam_size else None,
            "length_penalty": args.length_penalty,
            "word_reward": args.word_reward,
            "batch_size": args.batch_size,
            "xla": args.xla,
        }
        args.set = (args.set or []) + [f"decode.{k}={v}" for k, v in given.items() if v is not None]
        return cmd_stage(args)
    ignored = stage_options_given(args)
    if ignored:  # they were dropped without a word (e.g. --set decode.beam_size=2)
        raise ConfigError(
            f"{', '.join(ignored)}: options of the evaluate stage (translator evaluate CONFIG); "
            "evaluating run directories takes the decoding flags (--beam-size, --length-penalty, "
            "--word-reward, --batch-size, --xla) and --test, --metrics, --output-dir, --no-cache"
        )
    return run_evaluate(args)


def cmd_plot(args) -> int:
    from translator.pipelines.evaluate_cmd import run_plot

    return run_plot(args)


def _ensemble_members(run_dir: str) -> list[str]:
    """`RUN_A+RUN_B` names an ensemble (unless a directory has that very name)."""
    if "+" in run_dir and not Path(run_dir).exists():
        return [part for part in run_dir.split("+") if part]
    return [run_dir]


def cmd_translate(args) -> int:
    from translator.rundir import RunDir
    from translator.translate_file import translate_stream

    # Everything is checked before TensorFlow and the model load (seconds).
    members = _ensemble_members(args.run_dir)
    runs = [RunDir(m).require_trained() for m in members]
    run = runs[0]
    options = {k: v for k, v in _decode_options(args).items() if v is not None}
    settings = run.load_config().decode.with_overrides(**options)  # ConfigError naming the option
    if args.seed is not None:
        options["seed"] = args.seed
    if args.plot_attention and settings.sampling_topk != 1:
        raise ValueError("--plot-attention draws the attention of search, not of sampling")
    if args.input and Path(args.input).is_dir():
        raise ValueError(f"--input {args.input} is a directory; give a text file")
    if args.input and not Path(args.input).exists():  # a pipe (`--input <(zcat f.gz)`) is fine
        raise FileNotFoundError(f"input file not found: {args.input}")
    if args.input and args.sentences:
        raise ValueError("give sentences on the command line or --input FILE, not both")
    for i, sentence in enumerate(args.sentences, start=1):
        problem = describe_unicode_problem(sentence)
        if problem is not None:  # a byte that is not UTF-8, decoded with surrogateescape
            raise ValueError(
                f"SENTENCE {i} is not valid UTF-8 ({problem}); give sentences in UTF-8 (is the "
                "terminal's encoding UTF-8?), or use --input FILE"
            )
    if args.plot_attention and (len(args.sentences) != 1 or args.input):
        raise ValueError("--plot-attention takes exactly one SENTENCE on the command line")
    if args.plot_attention:
        check_output_path(args.plot_attention, "--plot-attention")
        from translator.plots import figure_format

        figure_format(args.plot_attention, "--plot-attention")
    if args.resume and not args.output:
        raise ValueError("--resume continues an --output file; give --output")
    if args.output:
        out = check_output_path(args.output, "--output")
        check_not_an_input(out, [args.input] if args.input else [])
    import_tensorflow_quietly()
    from translator.translate import Translator

    translator = Translator.load(runs if len(runs) > 1 else run)
    if args.plot_attention:
        return _plot_attention(translator, args, options)
    if args.sentences and not args.output:
        return translate_stream(translator, iter(args.sentences), sys.stdout, options)
    if args.sentences:  # --output with sentences: write the file, as with --input
        return translate_stream(
            translator, iter(args.sentences), None, options, output_path=Path(args.output)
        )
    # Bytes, decoded line by line, so invalid UTF-8 is reported with its line number.
    source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
    name = args.input or "<stdin>"
    try:
        if args.output:
            return translate_stream(
                translator,
                source,
                None,
                options,
                output_path=Path(args.output),
                resume=args.resume,
                source_name=name,
            )
        return translate_stream(translator, source, sys.stdout, options, source_name=name)
    finally:
        if args.input:
            source.close()


def _plot_attention(translator, args, options: dict) -> int:
    """Translate one sentence, print the translation and draw its attention heatmap."""
    from translator.plots import plot_attention

    options = {k: v for k, v in options.items() if k != "n_best"}
    alignment = translator.align(args.sentences[0], **options)
    path = plot_attention(alignment, args.plot_attention)
    print(alignment.translation)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from translator.benchmark import format_report, run_benchmarks

    results = run_benchmarks(
        args.run_dir,
        train_steps=args.train_steps,
        naive_sentences=args.naive_sentences,
        verbose=True,  # progress on stderr
        export=not args.no_export,
        reference=args.reference,
        roof_size=args.roof_size,
        xla=args.xla,
    )
    if args.json != "-":  # `--json` alone: only JSON on stdout, for `| jq`
        print(format_report(results), flush=True)
    emit_json(results, args.json)
    return 0


def cmd_bench_distribute(args) -> int:
    from translator.distribute_bench import run_distribute_benchmark

    load_config(args.config, overrides=args.set or [])  # a bad config fails here, in one line
    results = run_distribute_benchmark(args.config, steps=args.steps, overrides=args.set)
    if args.json != "-":
        for key in ("mirrored_vs_none", "multi_worker_vs_none"):
            print(f"{key}: {results[key]}")
    emit_json(results, args.json)
    return 0


def _stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML file, e.g. configs/tiny.yaml")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.epochs=3",
    )
    p.add_argument(
        "--force", action="store_true", help="rerun stages even when they are up to date"
    )


def _decode_args(p: argparse.ArgumentParser, n_best: bool = True) -> None:
    p.add_argument("--beam-size", type=int, help="beam size (1 = greedy; default from the config)")
    if n_best:
        p.add_argument("--n-best", type=int, help="hypotheses per input (<= beam size)")
    p.add_argument("--length-penalty", type=float, help="length penalty alpha (0 = none)")
    p.add_argument(
        "--word-reward", type=float, help="beam search's bonus per output token (0 = none)"
    )
    p.add_argument("--batch-size", type=int, help="sentences per batch")
    add_xla_argument(p)
    p.add_argument(
        "--workers",
        type=positive_int,
        help="batches decoded at once, each in a thread; the outputs do not depend on it "
        "(default: decode.workers of the config)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="translator", description="Recurrent seq2seq machine translation."
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's own log lines (also: TRANSLATOR_VERBOSE=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run pipeline stages (prepare, tokenize, train, evaluate)")
    _stage_args(p)
    p.add_argument(
        "--stages", default=",".join(STAGES), help="comma-separated stages (default: all)"
    )
    p.set_defaults(func=cmd_run)
    for stage, text in (
        ("prepare", "read, clean and split the corpus"),
        ("tokenize", "train source and target tokenizers"),
        ("train", "train the model (resumes from the last checkpoint)"),
    ):
        p = sub.add_parser(stage, help=text)
        _stage_args(p)
        p.set_defaults(func=cmd_stage)

    from translator.pipelines.evaluate_cmd import add_evaluate_arguments, add_plot_arguments

    p = sub.add_parser(
        "evaluate",
        help="evaluate and compare runs on test sets (`evaluate CONFIG` runs the evaluate stage)",
        description="Translate test sets with one or more runs and decoding settings; print BLEU, chrF, "
        "TER, length ratio and speed, with paired bootstrap significance against the first run; write "
        "results.json, results.csv, hypotheses, sentence scores and BLEU-by-length plots.",
    )
    add_evaluate_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("plot", help="learning curves of several runs on one chart")
    add_plot_arguments(p)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("translate", help="translate sentences, a file, or stdin with a trained run")
    p.add_argument(
        "run_dir",
        help="a run directory with a trained model, or RUN_A+RUN_B: an ensemble of runs that "
        "share their tokenizers (the mean of their log-probabilities)",
    )
    p.add_argument(
        "sentences", nargs="*", help="sentences to translate (default: read --input or stdin)"
    )
    p.add_argument("--input", help="file with one sentence a line")
    p.add_argument("--output", help="write translations here (default: stdout)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --output file")
    p.add_argument(
        "--plot-attention",
        metavar="FILE.png",
        help="with one SENTENCE and an attention model: draw its alignment heatmap to this file",
    )
    _decode_args(p)
    p.add_argument(
        "--sampling-topk",
        type=int,
        metavar="K",
        help="sample instead of searching (e.g. for back-translation): 0 = from the whole "
        "distribution, K > 1 = from the K most likely tokens (default: the config's, 1 = greedy)",
    )
    p.add_argument(
        "--sampling-temperature",
        type=float,
        metavar="T",
        help="divide the log-probabilities by T before sampling (default: the config's, 1)",
    )
    p.add_argument(
        "--seed",
        type=number(int, minimum=0),
        help="seed of the samples (default 1); with the sentence itself, it alone decides a "
        "sentence's sample",
    )
    p.set_defaults(func=cmd_translate)

    from translator.pipelines.score_cmd import add_score_arguments, cmd_score

    p = sub.add_parser(
        "score",
        help="the log-probability a model gives translations (for filtering and reranking)",
        description="Score source<TAB>target pairs with a trained run (teacher-forced): print "
        "TOTAL<TAB>PER_TOKEN<TAB>TOKENS per input line, the sum of the target tokens' "
        "log-probabilities with EOS, its mean per token and the number of tokens with EOS.",
    )
    add_score_arguments(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "bench",
        help="training and decoding throughput of a trained run",
        description="Measure training target tokens/s and decoding sentences/s and tokens/s of a "
        "trained run, each also as GFLOP/s of useful work (counted from the model's shapes and "
        "the real sentence lengths) and as a fraction of this machine's matmul roof (tf.matmul, "
        "measured in the same process). Progress goes to stderr, the report to stdout.",
    )
    p.add_argument("run_dir", help="a run directory with a trained model")
    add_json_argument(
        p,
        "print JSON (or write it to the given file); `--json` alone prints nothing else on stdout",
    )
    p.add_argument(
        "--train-steps", type=number(int), default=20, help="training steps timed (default 20)"
    )
    p.add_argument(
        "--naive-sentences",
        type=number(int, minimum=0),
        default=100,
        help="sentences for the naive decoder (0: skip it)",
    )
    p.add_argument(
        "--no-export",
        action="store_true",
        help="skip the SavedModel export's decoding speed (measured beside the Python API's)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="also train a plain Keras model of the same shape (stock LSTM/GRU, Attention, Dense) "
        "on the same batches, side by side, in float32 and under the run's mixed precision "
        "policy; off by default: it doubles or triples the training part's time",
    )
    p.add_argument(
        "--roof-size",
        type=number(int),
        default=2048,
        metavar="N",
        help="matrix size of the tf.matmul that measures the roof (default 2048)",
    )
    p.add_argument(
        "--xla",
        action="store_true",
        help="also decode greedy and beam 5 (batch 64) as XLA-compiled loops (decode.xla), timed "
        "after a pass that compiles every batch shape",
    )
    p.set_defaults(func=cmd_bench)

    from translator.pipelines.export_cmd import add_export_arguments, cmd_export

    p = sub.add_parser(
        "export",
        help="export a trained run as a string -> string TensorFlow SavedModel",
        description="Write a SavedModel that translates strings to strings with TensorFlow and "
        "tensorflow-text alone: tokenisation, search and detokenisation inside the graph.",
    )
    add_export_arguments(p)
    p.set_defaults(func=cmd_export)

    from translator.pipelines.average_cmd import add_average_arguments, cmd_average

    p = sub.add_parser(
        "average",
        help="average the epoch checkpoints a run kept (train.average_checkpoints) into a new run",
        description="Average the weights of the last or best N epochs that a run trained with "
        "train.average_checkpoints kept; write a new run directory with the average as its "
        "model.keras and print its validation BLEU beside the best single epoch's.",
    )
    add_average_arguments(p)
    p.set_defaults(func=cmd_average)

    p = sub.add_parser(
        "bench-distribute",
        help="training tokens/s with train.distribute none, mirrored (2 CPU devices) and "
        "multi_worker (2 local workers), side by side",
    )
    p.add_argument("config", help="experiment YAML file, e.g. configs/tiny.yaml")
    p.add_argument(
        "--steps", type=positive_int, default=30, help="training steps per epoch (2 epochs)"
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    add_json_argument(p, "print JSON (or write it to the file)")
    p.set_defaults(func=cmd_bench_distribute)

    from translator.pipelines.bench_serve_cmd import add_bench_serve_arguments, cmd_bench_serve

    p = sub.add_parser(
        "bench-serve",
        help="load-test a translation server: N concurrent clients, throughput, p50/p99 latency, errors",
    )
    add_bench_serve_arguments(p)
    p.set_defaults(func=cmd_bench_serve)

    from translator.pipelines.serve_cmd import add_serve_arguments, cmd_serve

    p = sub.add_parser("serve", help="serve a trained model over HTTP: a JSON API and a web page")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    from translator.pipelines.synth_cmd import add_synth_arguments, cmd_synth

    p = sub.add_parser(
        "synth-corpus",
        help="write a synthetic corpus of N pairs: the bundled pairs repeated with light noise",
    )
    add_synth_arguments(p)
    p.set_defaults(func=cmd_synth)

    from translator.pipelines.bench_scale_cmd import add_bench_scale_arguments, cmd_bench_scale

    p = sub.add_parser(
        "bench-scale",
        help="wall time and peak memory (RSS) of prepare, tokenize and N training steps per config",
        description="Run prepare, tokenize and train (N steps) of each CONFIG as subprocesses in "
        "a fresh run directory, measuring each stage's wall time and peak resident memory; print "
        "a table per config and the ratio of peak memory between configs.",
    )
    add_bench_scale_arguments(p)
    p.set_defaults(func=cmd_bench_scale)
    return parser


# Commands that load TensorFlow; `plot` and `--help` do not.
TENSORFLOW_COMMANDS = (
    "run",
    "prepare",
    "tokenize",
    "train",
    "evaluate",
    "translate",
    "bench",
    "serve",
    "export",
    "average",
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow without the INFO lines its C++ start-up writes to stderr (oneDNN, CUDA
    stubs, CPU features), which `TF_CPP_MIN_LOG_LEVEL` does not reach in TensorFlow 2.21. They come
    back with `--verbose` or `TRANSLATOR_VERBOSE=1`."""
    if "tensorflow" in sys.modules or os.environ.get("TRANSLATOR_VERBOSE"):
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one line each: `warning: ...`."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _os_error(e: OSError) -> str:
    """One line for an `OSError`: the path (an atomic write's target rather than its hidden
    temporary file) and the system's reason."""
    name = e.filename2 if e.filename2 is not None else e.filename
    reason = e.strerror or str(e)
    return f"{name}: {reason}" if name is not None else reason


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's or `kill`'s stop), raised in the main thread as Ctrl-C is, so
    that the same clean-up runs: temporary files removed, worker threads and child processes
    stopped, the resume hint printed."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.verbose:
        os.environ["TRANSLATOR_VERBOSE"] = "1"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if extra:
        # `translate RUN_DIR --beam-size 5 "Satz eins." "Satz zwei."`: sentences after options.
        if args.command == "translate" and not any(e.startswith("-") for e in extra):
            args.sentences = [*args.sentences, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    previous = None
    if args.command != "serve" and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)  # uvicorn handles it in `serve`
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    """Run the parsed command; user mistakes, refused paths and interruptions end in one line."""
    try:
        if args.command in TENSORFLOW_COMMANDS and args.command != "translate":
            import_tensorflow_quietly()  # `translate` checks its arguments first
        return args.func(args)
    except USER_ERRORS as e:
        print(f"translator: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the system refused: a directory, a full disk, no permission
        if args.verbose:
            raise
        print(f"translator: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        stopped = "terminated" if isinstance(e, Terminated) else "interrupted"
        print(f"translator: {stopped}{_how_to_resume(args)}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:
        message = _resource_error(e)
        if message is None or args.verbose:
            raise
        print(f"translator: error: {message}", file=sys.stderr)
        return 1


def _how_to_resume(args) -> str:
    """What resumes an interrupted command (only the stages and `translate --output` can)."""
    stage_form = args.command == "evaluate" and getattr(args, "config", None) is not None
    if args.command in ("run", "prepare", "tokenize", "train") or stage_form:
        if getattr(args, "force", False):
            return "; rerun it without --force to resume (with --force it starts again)"
        return "; rerun the same command to resume"
    if args.command == "translate" and getattr(args, "output", None):
        if getattr(args, "resume", False):
            return "; rerun the same command to resume"
        return f"; rerun it with --resume to continue {args.output} where it stopped"
    return ""


def _resource_error(e: Exception) -> str | None:
    """One line for TensorFlow running out of memory or disk (a model, batch or input too large
    for this machine, a full disk), else None (a bug: the traceback is shown)."""
    if type(e).__name__ != "ResourceExhaustedError" or not type(e).__module__.startswith(
        "tensorflow"
    ):
        return None
    text = str(getattr(e, "message", e))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "No space left on device" in text:
        where = re.search(r"([^\s;:]*/[^\s;:]+)[;:]? No space left on device", text)
        return f"no space left on device{f' writing {where.group(1)}' if where else ''}"
    shape = re.search(r"OOM when allocating tensor with shape\s*\[[^\]]*\]", text)
    return (
        f"out of memory ({shape.group(0) if shape else first[:200]}): the model, its batches or an "
        "input are too large for this machine's memory; use smaller model.* sizes, "
        "train.batch_tokens or decode.batch_size, or shorter inputs"
    )


if __name__ == "__main__":
    sys.exit(main())
