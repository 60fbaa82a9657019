"""`translator serve RUN_DIR|EXPORT_DIR`: the HTTP translation server (translator.serving)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from translator.pipelines import argtypes


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    # Limits default to `ServeLimits()`'s (not imported here: `translator --help` stays fast).
    p.description = (
        "Serve a trained run directory (or an export) over HTTP: POST /translate, POST /align, "
        "GET /health, a web page at / and the API docs at /docs. Concurrent requests are decoded "
        "together in batches. Prints `serving on http://HOST:PORT` once listening; Ctrl-C stops."
    )
    p.add_argument("path", metavar="RUN_DIR|EXPORT_DIR", help="a trained run directory or export")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; other addresses get a "
        "warning, the server has no authentication)",
    )
    p.add_argument(
        "--port",
        type=argtypes.port,
        default=8080,
        metavar="N",
        help="TCP port (default 8080; 0: a free one)",
    )
    p.add_argument(
        "--batch-window-ms",
        type=argtypes.non_negative_float,
        metavar="MS",
        default=5.0,
        help="how long a request waits for others to share its batch (default 5)",
    )
    p.add_argument(
        "--max-batch-size",
        type=argtypes.positive_int,
        metavar="N",
        default=64,
        help="sentences per decoding batch (default 64)",
    )
    p.add_argument(
        "--workers",
        type=argtypes.positive_int,
        metavar="N",
        default=2,
        help="batches decoded at once, each in a thread (default 2: both cores of a 2-core CPU)",
    )
    for flag, text in (
        ("--max-sentences", "sentences per request (default 64)"),
        ("--max-chars", "characters per sentence (default 2000)"),
        ("--max-body-bytes", "request body size in bytes (default 1000000)"),
        ("--max-beam-size", "largest beam a request may ask for (default 16)"),
        (
            "--max-request-seconds",
            "seconds a /translate request may wait for its translation before a 503 (default 120)",
        ),
    ):
        p.add_argument(flag, type=argtypes.positive_int, metavar="N", help=text)
    p.add_argument(
        "--max-requests",
        type=argtypes.positive_int,
        metavar="N",
        help="stop after this many requests (for tests and load tests)",
    )
    p.add_argument(
        "--timeout",
        type=argtypes.non_negative_float,
        metavar="SECONDS",
        help="stop after this many seconds (for tests and load tests)",
    )


def cmd_serve(args) -> int:
    from translator.serving.app import ServeLimits
    from translator.serving.backend import open_backend
    from translator.serving.server import ServeError, serve

    given = {
        "max_body_bytes": args.max_body_bytes,
        "max_sentences": args.max_sentences,
        "max_chars": args.max_chars,
        "max_beam_size": args.max_beam_size,
        "max_request_seconds": args.max_request_seconds,
    }
    limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})
    backend = open_backend(args.path)  # a clear error before anything listens
    # Warnings and errors of the server (uvicorn, translator.serving), one line each, timed.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code = serve(
            backend,
            host=args.host,
            port=args.port,
            limits=limits,
            batch_window_ms=args.batch_window_ms,
            max_batch_size=args.max_batch_size,
            workers=args.workers,
            max_requests=args.max_requests,
            timeout=args.timeout,
        )
    except ServeError as e:
        print(f"translator: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # uvicorn has shut down cleanly and re-raised Ctrl-C
        code = 0
    # Also after a normal return: uvicorn re-raises a captured Ctrl-C into asyncio's own SIGINT
    # handler, which turns it into KeyboardInterrupt only if the server's task is still running.
    busy = [t for t in threading.enumerate() if t.name.startswith("decode") and t.is_alive()]
    for thread in busy:  # idle decoding threads end at once; a running batch does not
        thread.join(timeout=1.0)
    if any(t.is_alive() for t in busy):
        # The requests of batches still decoding were answered with a 503 before the server
        # stopped; TensorFlow cannot stop a running search, and waiting for it could take
        # minutes, so the process ends without it.
        print("translator: server stopped (a batch still decoding was dropped)", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print("translator: server stopped", file=sys.stderr)
    return code
