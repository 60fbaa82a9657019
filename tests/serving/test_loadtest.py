"""The load test (translator/serving/loadtest.py, `translator bench-serve`) against a stand-in
server: a stdlib HTTP server on 127.0.0.1 with the translation server's JSON contract, which can
be slowed down and made to fail chosen requests. No model, no TensorFlow."""

import contextlib
import json
import socket
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from translator.serving.loadtest import (
    LoadResult,
    ServerError,
    _launch,
    format_table,
    latency_summary,
    run_load,
    run_load_matrix,
    start_server,
    stop_server,
    wait_healthy,
)

from ..pipelines.helpers import cli

SENTENCES = ["Das Haus.", "Der Hund.", "Die Katze."]


def _answer(text: str) -> dict:
    return {"translation": text.upper(), "score": -1.5, "hypotheses": [{"translation": text}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def log_message(self, *args):
        pass

    def _send(self, status: int, data=None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, {"status": "ok", "model": "stand-in"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/translate":
            return self._send(404, {"error": "not found"})
        with server.lock:
            n = len(server.bodies)
            server.bodies.append(body)
            server.peers.add(self.client_address)
        time.sleep(server.delay)
        if n in server.fail_on:
            return self._send(500, {"error": "injected failure"})
        if n in server.garbage_on:
            return self._send(200, raw=b"<html>not json</html>")
        text = body["text"]
        if isinstance(text, str):
            return self._send(200, _answer(text))
        return self._send(200, {"translations": [_answer(t) for t in text]})


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay=0.0, fail_on=(), garbage_on=()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay, self.fail_on, self.garbage_on = delay, set(fail_on), set(garbage_on)
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.peers: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def standin(**kwargs):
    server = StandIn(**kwargs)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- run_load ---------------------------------------------------------------------------------------
def test_counts_latencies_and_keep_alive():
    with standin(delay=0.005) as server:
        r = run_load(server.url, SENTENCES, clients=4, requests=40)
    assert isinstance(r, LoadResult) and r.passed
    assert (r.sent, r.ok, r.errors, r.not_sent, r.error_samples) == (40, 40, 0, 0, [])
    assert len(server.bodies) == 40
    # Round-robin over the sentences, one a request, no beam size unless asked.
    texts = [b["text"] for b in server.bodies]
    assert sorted(texts.count(s) for s in SENTENCES) == [13, 13, 14]
    assert all(set(b) == {"text"} for b in server.bodies)
    # One keep-alive connection per client.
    assert 1 <= len(server.peers) <= 4
    lat = r.latency_ms
    assert 5.0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert 5.0 <= lat["mean"] <= lat["max"]
    assert r.requests_per_s == pytest.approx(40 / r.seconds, rel=1e-2)
    assert r.sentences_per_s == pytest.approx(r.requests_per_s, rel=1e-2)
    d = r.as_dict()
    assert d["latency_ms"] == lat and d["clients"] == 4
    json.dumps(d)


def test_batched_requests_with_beam_size():
    with standin() as server:
        r = run_load(server.url, SENTENCES, 2, 5, sentences_per_request=4, beam_size=3)
    assert r.passed and r.ok == 5
    assert all(isinstance(b["text"], list) and len(b["text"]) == 4 for b in server.bodies)
    assert all(b["beam_size"] == 3 for b in server.bodies)
    sent = sorted(t for b in server.bodies for t in b["text"])
    assert sorted(sent.count(s) for s in SENTENCES) == [6, 7, 7]  # 20 round-robin
    assert r.sentences_per_s == pytest.approx(4 * r.requests_per_s, rel=1e-2)


def test_error_status_and_bad_body_are_errors():
    with standin(fail_on={3}, garbage_on={7}) as server:
        r = run_load(server.url, SENTENCES, clients=3, requests=20)
    assert (r.sent, r.ok, r.errors, r.not_sent) == (20, 18, 2, 0)
    assert not r.passed
    samples = "\n".join(r.error_samples)
    assert "HTTP 500: injected failure" in samples and "not JSON" in samples
    assert r.latency_ms["p50"] is not None  # latencies of the 18 good requests


def test_refused_connection_is_an_error():
    r = run_load(f"http://127.0.0.1:{_free_port()}", SENTENCES, clients=2, requests=6, timeout=2)
    assert (r.sent, r.ok, r.errors) == (6, 0, 6)
    assert "ConnectionRefusedError" in r.error_samples[0]
    assert len(r.error_samples) == 5  # the first few only
    assert r.latency_ms == dict.fromkeys(("p50", "p90", "p99", "max", "mean"))
    assert r.requests_per_s == 0.0


def test_the_deadline_bounds_the_run():
    with standin(delay=0.2) as server:
        start = time.monotonic()
        r = run_load(server.url, SENTENCES, clients=2, requests=1000, max_seconds=0.5)
        elapsed = time.monotonic() - start
    assert elapsed < 2.0, elapsed
    assert r.not_sent > 900 and r.sent + r.not_sent == 1000
    assert r.ok + r.errors == r.sent and r.ok >= 2
    assert not r.passed


def test_more_clients_than_requests():
    with standin() as server:
        r = run_load(server.url, SENTENCES, clients=16, requests=3)
    assert r.passed and (r.clients, r.sent, r.ok) == (16, 3, 3)
    assert len(server.bodies) == 3


def test_bad_arguments():
    for kwargs in ({"clients": 0}, {"requests": 0}, {"sentences_per_request": 0}, {"beam_size": 0}):
        args = {"clients": 1, "requests": 1, **kwargs}
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            run_load("http://127.0.0.1:1", SENTENCES, **args)
    with pytest.raises(ValueError, match="no sentences"):
        run_load("http://127.0.0.1:1", [], 1, 1)
    with pytest.raises(ValueError, match="not a server URL"):
        run_load("127.0.0.1:8000", SENTENCES, 1, 1)


def test_latency_summary_matches_numpy_percentiles():
    s = latency_summary([float(x) for x in range(1, 101)])
    # numpy.percentile(range(1, 101), [50, 90, 99]) == [50.5, 90.1, 99.01]
    assert s == {"p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0, "mean": 50.5}
    assert latency_summary([7.0]) == dict.fromkeys(("p50", "p90", "p99", "max", "mean"), 7.0)


def test_matrix_and_table():
    seen = []
    with standin() as server:
        results = run_load_matrix(
            server.url, SENTENCES, clients=(1, 3), requests=6, warmup=2, progress=seen.append
        )
    assert [r.clients for r in results] == [1, 3] and seen == results
    assert len(server.bodies) == 2 + 6 + 6  # the warm-up is sent, not reported
    table = format_table(results)
    lines = table.splitlines()
    assert len(lines) == 4  # header, rule, two rows
    assert "clients" in lines[0] and "p50 ms" in lines[0] and "p99 ms" in lines[0]
    assert lines[2].split()[:5] == ["1", "6", "6", "0", "0"]
    assert lines[3].split()[:5] == ["3", "6", "6", "0", "0"]
    assert len({len(line) for line in lines}) == 1  # aligned
    assert format_table([]) == "(no results)"


# -- the server process -----------------------------------------------------------------------------
def test_wait_healthy():
    with standin() as server:
        assert wait_healthy(server.url, 5)["status"] == "ok"
    start = time.monotonic()
    with pytest.raises(ServerError, match="ConnectionRefusedError"):
        wait_healthy(f"http://127.0.0.1:{_free_port()}", 0.3)
    assert time.monotonic() - start < 3


# A stand-in `translator serve`: floods stdout and stderr (a full pipe must not block it), then
# prints its URL and serves; it exits by itself after 60 s.
FAKE_SERVER = textwrap.dedent(
    """
    import json, os, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a):
            pass
        def reply(self, data):
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            self.reply({"status": "ok"})
        def do_POST(self):
            text = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"]
            self.reply({"translation": text, "score": 0.0, "hypotheses": []})

    threading.Timer(60, os._exit, (0,)).start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    sys.stderr.write("noise " * 50000 + "\\n")
    print("log line\\n" * 20000, end="")
    print(f"serving on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    """
)


def test_launch_reads_the_url_and_stop_server_ends_it(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER, encoding="utf-8")
    proc, url = _launch([sys.executable, str(script)], "fake server", startup_timeout=20)
    try:
        assert url.startswith("http://127.0.0.1:")
        wait_healthy(url, 5, proc=proc)
        assert run_load(url, SENTENCES, 2, 10).passed
    finally:
        stop_server(proc, timeout=5)
    assert proc.poll() is not None


def test_a_server_that_does_not_start_is_reported_with_its_output(tmp_path):
    # `serve` with an unknown option fails in argparse, before TensorFlow or a model is loaded.
    with pytest.raises(RuntimeError, match="before it was serving") as e:
        start_server(tmp_path / "run", timeout=5, extra_args=["--no-such-option"])
    assert "error" in str(e.value) and "usage" in str(e.value)
    script = tmp_path / "silent.py"
    script.write_text("import time\ntime.sleep(30)\n", encoding="utf-8")
    start = time.monotonic()
    with pytest.raises(ServerError, match="within 0.5 s"):
        _launch([sys.executable, str(script)], "silent server", startup_timeout=0.5)
    assert time.monotonic() - start < 10


# -- the command line -------------------------------------------------------------------------------
def _usage_error(r, *fragments):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, (fragment, r.stderr)


def test_cli_argument_errors(tmp_path, capsys):
    from translator.pipelines.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["bench-serve", "run", "--clients", "1, 8,32"]).clients == (1, 8, 32)
    for bad in (["--clients=1,x"], ["--clients=0"], ["--clients="], ["--clients=1,,8"],
                ["--clients=-1"], ["--requests=0"], ["--beam-size=x"], ["--max-seconds=inf"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            parser.parse_args(["bench-serve", "run", *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {bad[0].split('=')[0]}: " in err
        assert "expected" in err or "must be" in err, err
    # Through the command line: exit 2 and one clear line.
    _usage_error(
        cli("bench-serve", tmp_path, "--clients", "1,x"),
        "argument --clients: expected comma-separated positive client counts such as 1,8,32",
    )
    _usage_error(cli("bench-serve"), "translator: error: give PATH")
    _usage_error(cli("bench-serve", tmp_path / "missing"), "not a run or export directory")
    # A run directory without a prepared test split, an export that names no source run.
    _usage_error(cli("bench-serve", tmp_path), "data/test.tsv not found", "--source FILE")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / "translator_export.json").write_text("{}", encoding="utf-8")
    _usage_error(cli("bench-serve", tmp_path), "names no source_run", "--source FILE")


def test_cli_against_a_running_server(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("Das Haus.\n\nDer Hund.\n", encoding="utf-8")
    with standin() as server:
        r = cli(
            "bench-serve", "--url", server.url, "--source", src, "--clients", "1,3",
            "--requests", "8", "--json",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)  # `--json` alone: only JSON on stdout
        assert report["passed"] and report["errors"] == 0 and report["sentences"] == 2
        assert [x["clients"] for x in report["results"]] == [1, 3]
        assert all(x["ok"] == 8 for x in report["results"])
        assert len(server.bodies) == 2 + 8 + 8

        out = tmp_path / "bench.json"
        r = cli("bench-serve", "--url", server.url, "--source", src, "--clients", "2",
                "--requests", "4", "--json", out)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "p99 ms" in r.stdout and f"wrote {out}" in r.stdout
        assert json.loads(out.read_text(encoding="utf-8"))["results"][0]["ok"] == 4


def test_cli_fails_on_errors_and_reads_an_exports_source_run(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "test.tsv").write_text("Das Haus.\tThe house.\n", encoding="utf-8")
    export = tmp_path / "export"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"")
    meta = {"source_run": str(run)}
    (export / "translator_export.json").write_text(json.dumps(meta), encoding="utf-8")
    with standin(fail_on={4}) as server:  # the third measured request (after 2 warm-up ones)
        r = cli("bench-serve", export, "--url", server.url, "--clients", "1", "--requests", "5")
    assert r.returncode == 1, r.stderr
    assert "injected failure" in r.stderr and "1 errors" in r.stderr
    assert {b["text"] for b in server.bodies} == {"Das Haus."}
    assert "clients" in r.stdout  # the table is printed all the same


def test_response_checks():
    from translator.serving.loadtest import _response_error

    one = json.dumps(_answer("x")).encode()
    assert _response_error(200, one, 1, batch=False) is None
    null_score = json.dumps({"translation": "x", "score": None, "hypotheses": []}).encode()
    assert _response_error(200, null_score, 1, batch=False) is None  # e.g. the naive decoder
    assert "translation" in _response_error(200, b'{"score": 1.0}', 1, batch=False)
    assert "score" in _response_error(200, b'{"translation": "x"}', 1, batch=False)
    two = json.dumps({"translations": [_answer("a"), _answer("b")]}).encode()
    assert _response_error(200, two, 2, batch=True) is None
    assert "list of 3" in _response_error(200, two, 3, batch=True)
    assert _response_error(503, b'{"error": "busy"}', 1, batch=False) == "HTTP 503: busy"
    assert _response_error(502, b"Bad Gateway", 1, batch=False) == "HTTP 502: Bad Gateway"
