"""`translator bench-serve`: load-test a translation server.

Starts `translator serve PATH` on 127.0.0.1 (unless `--url` names a running server), sends a fixed
number of requests from N concurrent clients for each N of `--clients`, prints throughput, p50/p99
latency and errors, and exits 1 unless every request was answered correctly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from translator.pipelines import argtypes
from translator.pipelines.jsonout import add_json_argument, emit_json

STARTUP_SECONDS = 300.0  # the server's import of TensorFlow and its model load
HEALTH_SECONDS = 60.0


def _client_counts(text: str) -> tuple[int, ...]:
    """`1,8,32` -> (1, 8, 32)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive client counts such as 1,8,32, got {text!r}"
        )
    return tuple(int(p) for p in parts)


def add_bench_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="a run directory or an export directory to serve (optional with --url and --source)",
    )
    p.add_argument(
        "--clients",
        type=_client_counts,
        default=(1, 8, 32),
        metavar="N,N,...",
        help="concurrent clients, one load test per number (default 1,8,32)",
    )
    p.add_argument(
        "--requests",
        type=argtypes.positive_int,
        default=200,
        metavar="N",
        help="requests per load test (default 200)",
    )
    p.add_argument(
        "--sentences-per-request",
        type=argtypes.positive_int,
        default=1,
        metavar="N",
        help="sentences in each request (default 1; more send a list)",
    )
    p.add_argument(
        "--beam-size",
        type=argtypes.positive_int,
        metavar="N",
        help="beam size sent with each request (default: server's)",
    )
    p.add_argument("--url", help="load-test this running server instead of starting one on PATH")
    p.add_argument(
        "--source",
        metavar="FILE",
        help="sentences to send, one a line (default: the source side of the run's test split)",
    )
    add_json_argument(p, "print JSON (or write it to the given file)")
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        metavar="N",
        help="requests sent first and not measured (default 2)",
    )
    p.add_argument(
        "--request-timeout",
        type=argtypes.positive_seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds one request may take before it counts as an error (default 60)",
    )
    p.add_argument(
        "--max-seconds",
        type=argtypes.positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="wall-clock limit of each load test; requests not sent by then are reported (default 600)",
    )


def _export_source_run(export: Path) -> Path:
    """The run an export was made from, per `translator_export.json`'s `source_run`."""
    from translator.io import read_json

    meta = export / "translator_export.json"
    if not meta.is_file():
        raise ValueError(
            f"{export} is an export without {meta.name}, so its test split is unknown; "
            "give --source FILE (one sentence a line)"
        )
    data = read_json(meta, "export the model again, or give --source FILE")
    source_run = data.get("source_run") if isinstance(data, dict) else None
    if not source_run or not isinstance(source_run, str):
        raise ValueError(
            f"{meta} names no source_run, so the export's test split is unknown; "
            "give --source FILE (one sentence a line)"
        )
    candidates = [Path(source_run)]
    if not Path(source_run).is_absolute():
        candidates.append(export / source_run)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"the export's source run {source_run} (from {meta}) is not a directory here; "
        "give --source FILE (one sentence a line)"
    )


def load_sentences(path: str | None, source: str | None) -> tuple[list[str], str]:
    """The sentences to send and where they come from: `--source`, else the test split of the
    run PATH (or, for an export, of the run it was made from)."""
    from translator.data.corpus import CorpusError, read_lines, read_tsv
    from translator.rundir import RunDir

    if source:
        if Path(source).is_dir():
            raise ValueError(f"--source {source} is a directory; give a text file")
        sentences = [s.strip() for s in read_lines(source) if s.strip()]
        if not sentences:
            raise ValueError(f"--source {source} has no sentences")
        return sentences, source
    if path is None:
        raise ValueError(
            "give PATH (a run directory or an export), or --url URL with --source FILE"
        )
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"not a run or export directory: {run_dir}")
    if (run_dir / "saved_model.pb").is_file():
        run_dir = _export_source_run(run_dir)
    test = RunDir(run_dir).split("test")
    if not test.is_file():
        raise CorpusError(
            f"{test} not found: give --source FILE (one sentence a line) or run the `prepare` stage"
        )
    sentences = [p.src for p in read_tsv(test) if p.src.strip()]
    if not sentences:
        raise CorpusError(f"{test} has no sentences; give --source FILE")
    return sentences, str(test)


def cmd_bench_serve(args) -> int:
    from translator.serving.loadtest import (
        ServerError,
        format_table,
        run_load_matrix,
        start_server,
        stop_server,
        wait_healthy,
    )

    json_only = args.json == "-"  # `--json` alone: only JSON on stdout, for `| jq`
    log = sys.stderr if json_only else sys.stdout

    def say(text: str) -> None:
        print(text, file=log, flush=True)

    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, not {args.warmup}")
    if args.path is not None and not args.url and not Path(args.path).is_dir():
        raise FileNotFoundError(f"not a run or export directory: {args.path}")
    sentences, origin = load_sentences(args.path, args.source)
    options = {
        "sentences_per_request": args.sentences_per_request,
        "beam_size": args.beam_size,
        "timeout": args.request_timeout,
        "max_seconds": args.max_seconds,
    }
    proc = None
    try:
        if args.url:
            url = args.url
            wait_healthy(url, 10.0)
        else:
            # The server's own time limit covers its start and every load test (with a margin).
            runs = len(args.clients) + (1 if args.warmup else 0)
            budget = STARTUP_SECONDS + HEALTH_SECONDS + runs * args.max_seconds + 60.0
            say(f"starting translator serve {args.path} ...")
            proc, url = start_server(args.path, timeout=budget, startup_timeout=STARTUP_SECONDS)
            wait_healthy(url, HEALTH_SECONDS, proc=proc)
        say(
            f"load test of {url}: {args.requests} requests per client count, "
            f"{args.sentences_per_request} sentence(s) a request, from {len(sentences)} sentences "
            f"of {origin}"
        )

        def progress(r) -> None:
            say(
                f"  {r.clients:>3} clients: {r.ok}/{r.requests} ok, {r.errors} errors, "
                f"{r.requests_per_s:.1f} requests/s in {r.seconds:.1f} s"
            )

        results = run_load_matrix(
            url,
            sentences,
            clients=args.clients,
            requests=args.requests,
            warmup=args.warmup,
            progress=progress,
            **options,
        )
    except ServerError as e:
        print(f"translator: error: {e}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            stop_server(proc)

    errors = sum(r.errors for r in results)
    not_sent = sum(r.not_sent for r in results)
    if not json_only:
        print(format_table(results))
    if args.json is not None:
        report = {
            "url": url,
            "path": args.path,
            "server": "given (--url)" if args.url else "started",
            "source": origin,
            "sentences": len(sentences),
            "sentences_per_request": args.sentences_per_request,
            "beam_size": args.beam_size,
            "warmup": args.warmup,
            "errors": errors,
            "not_sent": not_sent,
            "passed": errors == 0 and not_sent == 0,
            "results": [r.as_dict() for r in results],
        }
        emit_json(report, args.json, ensure_ascii=False)
    if errors or not_sent:
        for r in results:
            for sample in r.error_samples:
                print(f"  {r.clients} clients: {sample}", file=sys.stderr)
        print(
            f"translator: bench-serve: {errors} errors, {not_sent} requests not sent within "
            f"--max-seconds; a passing load test has none",
            file=sys.stderr,
        )
        return 1
    return 0
