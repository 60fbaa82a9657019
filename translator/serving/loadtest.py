"""Load test of a translation server (`translator bench-serve`).

`run_load` sends a fixed number of `POST /translate` requests from N concurrent clients and
reports throughput, latency percentiles and errors; `run_load_matrix` does that for several
client counts; `start_server` / `stop_server` run `translator serve` in a child process.

Each client is a thread with its own keep-alive `http.client` connection; the clients share one
request counter, so exactly `requests` requests are sent in total (fewer only if the run's
wall-clock limit, `max_seconds`, passes first: those are reported as `not_sent`). A request is an
error if the connection fails or times out, the status is not 200, or the body is not the JSON
the server's contract promises. Latencies are those of the successful requests, measured with
`time.perf_counter` from sending the request to reading the whole response.

Nothing here imports TensorFlow: the load test runs beside the server, not inside it.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

SERVING_PREFIX = "serving on "
MAX_ERROR_SAMPLES = 5
_BODY_EXCERPT = 200  # characters of an unexpected response body kept in an error sample


class ServerError(RuntimeError):
    """The server did not start, did not become healthy, or cannot be reached."""


@dataclass
class LoadResult:
    """One load test: `requests` requests from `clients` concurrent clients.

    `latency_ms` holds `p50`, `p90`, `p99`, `max` and `mean` of the successful requests in
    milliseconds (all None if none succeeded); the percentiles are `statistics.quantiles(...,
    n=100, method="inclusive")`, the same linear interpolation as numpy's default percentile.
    Throughput counts successful requests (and their sentences) over the whole run's wall-clock
    time, `seconds`.
    """

    url: str
    clients: int
    requests: int  # requests planned
    sentences_per_request: int
    sent: int  # requests sent (answered or failed); `requests - sent` is `not_sent`
    ok: int
    errors: int
    not_sent: int  # not sent before the run's wall-clock limit
    error_samples: list[str]
    seconds: float
    requests_per_s: float
    sentences_per_s: float
    latency_ms: dict[str, float | None]

    @property
    def passed(self) -> bool:
        """Every planned request was sent and answered correctly."""
        return self.errors == 0 and self.not_sent == 0

    def as_dict(self) -> dict:
        return asdict(self)


# -- HTTP -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int | None
    prefix: str  # the URL's path without a trailing slash, prepended to /translate and /health

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)


def _endpoint(url: str) -> _Endpoint:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise ValueError(f"not a server URL: {url!r}; expected e.g. http://127.0.0.1:8000")
    return _Endpoint(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _json_error(status: int, raw: bytes) -> str:
    """`HTTP 500: message` from an error response (its JSON `error`, else the body's start)."""
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict) and "error" in data:
            text = str(data["error"])
    return f"HTTP {status}: {text[:_BODY_EXCERPT]}"


def _translation_error(item, where: str) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("translation"), str):
        return f"{where} has no string `translation`"
    score = item.get("score", "missing")
    if not (score is None or isinstance(score, (int, float)) and not isinstance(score, bool)):
        return f"{where} has no `score` (a number, or null)"
    return None


def _response_error(status: int, raw: bytes, n_sentences: int, batch: bool) -> str | None:
    """Why a response is not the contract's answer to a request, or None if it is."""
    if status != 200:
        return _json_error(status, raw)
    try:
        data = json.loads(raw)
    except ValueError:
        return f"HTTP 200 but not JSON: {raw[:_BODY_EXCERPT].decode('utf-8', 'replace')!r}"
    if not batch:
        return _translation_error(data, "the response")
    items = data.get("translations") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != n_sentences:
        return f"the response has no list of {n_sentences} `translations`"
    for k, item in enumerate(items):
        if error := _translation_error(item, f"translations[{k}]"):
            return error
    return None


# -- one load test --------------------------------------------------------------------------------
class _Run:
    """The state the client threads share: the request counter, the outcome, the deadline."""

    def __init__(self, requests: int, deadline: float):
        self.requests = requests
        self.deadline = deadline  # time.monotonic()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.next = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []

    def take(self) -> int | None:
        """The next request's index, or None when all are taken, time is up, or the run stops."""
        with self.lock:
            if (
                self.next >= self.requests
                or self.stop.is_set()
                or time.monotonic() >= self.deadline
            ):
                return None
            self.next += 1
            return self.next - 1

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds * 1000.0)

    def error(self, index: int, message: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append(f"request {index}: {message}")


def _client(
    run: _Run,
    endpoint: _Endpoint,
    bodies: Callable[[int], tuple[bytes, int]],
    timeout: float,
    batch: bool,
    go: threading.Event,
) -> None:
    path = endpoint.prefix + "/translate"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    conn: http.client.HTTPConnection | None = None
    go.wait()
    try:
        while (index := run.take()) is not None:
            body, n_sentences = bodies(index)
            # Each request waits at most `timeout`, and never past the run's deadline.
            wait = max(0.001, min(timeout, run.deadline - time.monotonic()))
            if conn is None:
                conn = endpoint.connect(wait)
            conn.timeout = wait  # used when http.client (re)connects
            if conn.sock is not None:
                conn.sock.settimeout(wait)
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as e:
                run.error(index, f"{type(e).__name__}: {e}")
                conn.close()
                conn = None  # a fresh connection for the next request
                continue
            elapsed = time.perf_counter() - start
            error = _response_error(response.status, raw, n_sentences, batch)
            if error:
                run.error(index, error)
            else:
                run.ok(elapsed)
    finally:
        if conn is not None:
            conn.close()


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """`p50`, `p90`, `p99`, `max`, `mean` (ms, rounded to µs) of `latencies_ms`; None if empty.

    Percentiles are `statistics.quantiles(..., n=100, method="inclusive")`: linear
    interpolation between order statistics, as numpy's default `percentile`.
    """
    keys = ("p50", "p90", "p99", "max", "mean")
    if not latencies_ms:
        return dict.fromkeys(keys)
    data = list(latencies_ms)
    cuts = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else data * 99
    values = (cuts[49], cuts[89], cuts[98], max(data), statistics.fmean(data))
    return {k: round(float(v), 3) for k, v in zip(keys, values, strict=True)}


def run_load(
    url: str,
    sentences: list[str],
    clients: int,
    requests: int,
    *,
    sentences_per_request: int = 1,
    timeout: float = 60.0,
    beam_size: int | None = None,
    max_seconds: float = 600.0,
) -> LoadResult:
    """Send `requests` `POST /translate` requests to `url` (e.g. `http://127.0.0.1:8000`) from
    `clients` concurrent clients, `sentences` round-robin: one a request as `{"text": "..."}`, or
    `{"text": [...]}` with `sentences_per_request` > 1; `beam_size` is sent if given.

    A request taking over `timeout` seconds is an error. `max_seconds` bounds the whole run:
    requests not sent by then are `not_sent`, and those under way are cut off (as errors).
    Raises `ValueError` for an argument out of range, no sentences, or not an http(s) URL.
    """
    endpoint = _endpoint(url)
    if not sentences:
        raise ValueError("no sentences to send")
    counts = dict(clients=clients, requests=requests, sentences_per_request=sentences_per_request)
    if beam_size is not None:
        counts["beam_size"] = beam_size
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    for name, value in (("timeout", timeout), ("max_seconds", max_seconds)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")

    batch = sentences_per_request > 1

    def body(index: int) -> tuple[bytes, int]:
        first = index * sentences_per_request
        texts = [sentences[(first + j) % len(sentences)] for j in range(sentences_per_request)]
        payload: dict = {"text": texts if batch else texts[0]}
        if beam_size is not None:
            payload["beam_size"] = beam_size
        return json.dumps(payload, ensure_ascii=False).encode("utf-8"), len(texts)

    go = threading.Event()
    run = _Run(requests, deadline=math.inf)
    args = (run, endpoint, body, timeout, batch, go)
    threads = [threading.Thread(target=_client, args=args, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    run.deadline = time.monotonic() + max_seconds
    start = time.perf_counter()
    go.set()
    try:
        for t in threads:
            # Requests are cut off at the deadline; the margin only covers a stuck thread.
            t.join(max(0.0, run.deadline - time.monotonic()) + 5.0)
    finally:
        run.stop.set()  # Ctrl-C, or a thread still running: no new requests
    seconds = time.perf_counter() - start
    with run.lock:
        ok, errors, sent = len(run.latencies), run.errors, run.next
        latencies, samples = list(run.latencies), list(run.error_samples)
    return LoadResult(
        url=url,
        clients=clients,
        requests=requests,
        sentences_per_request=sentences_per_request,
        sent=sent,
        ok=ok,
        errors=errors,
        not_sent=requests - sent,
        error_samples=samples,
        seconds=round(seconds, 4),
        requests_per_s=round(ok / seconds, 3) if seconds > 0 else 0.0,
        sentences_per_s=round(ok * sentences_per_request / seconds, 3) if seconds > 0 else 0.0,
        latency_ms=latency_summary(latencies),
    )


def run_load_matrix(
    url: str,
    sentences: list[str],
    clients: Sequence[int] = (1, 8, 32),
    requests: int = 200,
    *,
    warmup: int = 2,
    progress: Callable[[LoadResult], None] | None = None,
    **options,
) -> list[LoadResult]:
    """One `run_load` per client count, after `warmup` requests from one client (not reported:
    a model server's first requests can include one-off work such as tracing a graph).

    `options` are `run_load`'s keyword arguments; `progress` is called with each result.
    """
    if not clients:
        raise ValueError("no client counts given")
    if warmup:
        run_load(url, sentences, 1, warmup, **options)
    results = []
    for n in clients:
        result = run_load(url, sentences, n, requests, **options)
        if progress is not None:
            progress(result)
        results.append(result)
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(results: Sequence[LoadResult]) -> str:
    """A plain text table, one row per load test (latencies in ms)."""
    from tabulate import tabulate  # a dependency of sacrebleu, which the project requires

    if not results:
        return "(no results)"
    header = ["clients", "requests", "ok", "errors", "not sent", "seconds", "req/s", "sentences/s"]
    header += ["p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"]
    rows = [
        [r.clients, r.requests, r.ok, r.errors, r.not_sent, f"{r.seconds:.2f}"]
        + [f"{r.requests_per_s:.1f}", f"{r.sentences_per_s:.1f}"]
        + [_ms(r.latency_ms[k]) for k in ("p50", "p90", "p99", "max", "mean")]
        for r in results
    ]
    return tabulate(
        rows, headers=header, tablefmt="simple", disable_numparse=True, stralign="right"
    )


# -- the server process ---------------------------------------------------------------------------
class _Drain(threading.Thread):
    """Reads a child's pipe to its end (so a chatty child never blocks on a full pipe), keeping
    the last lines, and notes the first line that starts with `prefix`."""

    def __init__(self, pipe, prefix: str | None = None, keep: int = 200):
        super().__init__(daemon=True)
        self.pipe, self.prefix = pipe, prefix
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.match: str | None = None
        self.matched = threading.Event()  # set on the match, or at the end of the pipe

    def run(self) -> None:
        try:
            with self.pipe:
                for line in self.pipe:
                    line = line.rstrip("\r\n")
                    if self.match is None and self.prefix and line.startswith(self.prefix):
                        self.match = line
                        self.matched.set()
                    else:
                        self.lines.append(line)
        except (OSError, ValueError):
            pass
        finally:
            self.matched.set()

    def tail(self, n: int = 60) -> str:
        return "\n".join(list(self.lines)[-n:])


def _launch(cmd: Sequence[str], what: str, startup_timeout: float) -> tuple[subprocess.Popen, str]:
    """Start `cmd` and wait for its `serving on URL` line on stdout; the process and the URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        env=env,
    )
    out, err = _Drain(proc.stdout, SERVING_PREFIX), _Drain(proc.stderr)
    out.start()
    err.start()
    deadline = time.monotonic() + startup_timeout
    while not out.matched.wait(0.1) and proc.poll() is None and time.monotonic() < deadline:
        pass
    if out.match is None or proc.poll() is not None:
        if proc.poll() is not None or out.matched.is_set():  # exited, or closed its stdout
            problem = f"ended (exit code {stop_server(proc)}) before it was serving"
        else:
            stop_server(proc)
            problem = f"printed no `{SERVING_PREFIX}URL` line within {startup_timeout:g} s"
        err.join(5)
        output = err.tail() or out.tail() or "(no output)"
        raise ServerError(f"{what} {problem}; its output:\n{output}")
    url = out.match[len(SERVING_PREFIX) :].strip()
    try:
        _endpoint(url)
    except ValueError:
        stop_server(proc)
        raise ServerError(f"{what} printed {out.match!r}, which names no server URL") from None
    return proc, url


def start_server(
    path: str | Path,
    *,
    timeout: float,
    max_requests: int | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 300.0,
) -> tuple[subprocess.Popen, str]:
    """Start `translator serve PATH` (a run or export directory) on 127.0.0.1, a free port, with
    `--timeout` (seconds it may run), `--max-requests` if given and `extra_args`, in a child
    process; the process (stop it with `stop_server`) and the URL it serves on.

    Raises:
        ServerError: (a RuntimeError) it exited, or printed no `serving on URL` line within
            `startup_timeout` seconds; the message holds the end of its stderr.
    """
    cmd = [sys.executable, "-m", "translator.pipelines.cli", "serve", str(path)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--timeout", f"{timeout:g}"]
    if max_requests is not None:
        cmd += ["--max-requests", str(max_requests)]
    cmd += [str(a) for a in extra_args]
    return _launch(cmd, f"translator serve {path}", startup_timeout)


def stop_server(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Terminate the server (SIGTERM), wait up to `timeout` seconds, then kill it; its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    return proc.returncode


def wait_healthy(url: str, deadline: float = 30.0, *, proc: subprocess.Popen | None = None) -> dict:
    """Poll `GET URL/health` until it answers 200 with `{"status": "ok", ...}`; that JSON.

    `deadline` is the seconds to keep trying (from now); with the server's `proc`, give up at
    once if it exits. Raises `ServerError` saying why it is not healthy.
    """
    endpoint = _endpoint(url)
    end = time.monotonic() + deadline
    last = "no answer"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"the server at {url} exited with code {proc.returncode}")
        wait = max(0.05, min(5.0, end - time.monotonic()))
        conn = endpoint.connect(wait)
        try:
            conn.request("GET", endpoint.prefix + "/health", headers={"Accept": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            if response.status != 200:
                last = _json_error(response.status, raw)
            else:
                data = json.loads(raw)
                if isinstance(data, dict) and data.get("status") == "ok":
                    return data
                last = f"unexpected health answer {raw[:_BODY_EXCERPT]!r}"
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        if time.monotonic() + 0.2 > end:
            raise ServerError(f"{url}/health is not ok after {deadline:g} s: {last}")
        time.sleep(0.2)
