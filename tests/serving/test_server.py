"""`translator serve` through real HTTP: a subprocess on a free loopback port (the `server`
fixture) for the model's answers, the request limits and the errors; in-process servers over a
stand-in backend for batching, failures and export-fixed options."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from .conftest import request, start_server


def _expected(api, texts, **options) -> list[list[tuple[str, float]]]:
    return api.translate_nbest(list(texts), **options)


def _assert_same(answer: dict, nbest: list[tuple[str, float]]) -> None:
    assert answer["translation"] == nbest[0][0]
    assert answer["score"] == pytest.approx(nbest[0][1], abs=1e-4)
    assert [h["text"] for h in answer["hypotheses"]] == [text for text, _ in nbest]
    assert [h["score"] for h in answer["hypotheses"]] == pytest.approx(
        [score for _, score in nbest], abs=1e-4
    )


# -- the model's answers -----------------------------------------------------------------------
def test_one_sentence_equals_the_python_api(server, api, sentences):
    status, answer = request(server.url, "/translate", {"text": sentences[0]})
    assert status == 200, answer
    assert answer["translation"] == api.translate(sentences[0])
    _assert_same(answer, _expected(api, sentences[:1])[0])


def test_a_list_with_options_equals_the_python_api(server, api, sentences):
    texts = [*sentences[:5], ""]
    body = {"text": texts, "beam_size": 3, "n_best": 2, "length_penalty": 0.5}
    status, answer = request(server.url, "/translate", body)
    assert status == 200, answer
    expected = _expected(api, texts, beam_size=3, n_best=2, length_penalty=0.5)
    assert len(answer["translations"]) == len(texts)
    for got, nbest in zip(answer["translations"], expected, strict=True):
        _assert_same(got, nbest)
    assert all(len(t["hypotheses"]) == 2 for t in answer["translations"][:-1])
    assert answer["translations"][-1]["hypotheses"] == [{"text": "", "score": 0.0}]  # empty input


def test_align_gives_the_attention_of_the_python_api(server, api, sentences):
    status, answer = request(server.url, "/align", {"text": sentences[1]})
    assert status == 200, answer
    expected = api.align(sentences[1])
    assert answer["source_tokens"] == expected.source_tokens
    assert answer["target_tokens"] == expected.target_tokens
    assert answer["translation"] == expected.translation
    rows = answer["attention"]
    assert len(rows) == len(expected.target_tokens)
    assert all(len(row) == len(expected.source_tokens) for row in rows)
    assert [sum(row) for row in rows] == pytest.approx([1.0] * len(rows), abs=1e-3)


def test_health_and_docs(server, tiny_attention_run):
    status, health = request(server.url, "/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["model"] == tiny_attention_run.name
    assert health["attention"] is True
    assert health["defaults"] == {"beam_size": 1, "n_best": 1, "length_penalty": 0.0}
    assert health["limits"] == {
        "max_body_bytes": 1_000_000,
        "max_sentences": 64,
        "max_chars": 2000,
        "max_beam_size": 16,
        "max_request_seconds": 120,
    }
    status, spec = request(server.url, "/openapi.json")
    assert status == 200
    assert {"/translate", "/align", "/health"} <= set(spec["paths"])


def test_the_page_is_served(server):
    import urllib.request

    with urllib.request.urlopen(server.url + "/", timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.read().decode()
    assert 'id="translate"' in page and 'id="output"' in page and 'id="heatmap"' in page
    assert "http://" not in page and "https://" not in page  # no external resources


def test_concurrent_requests_match_sequential_ones(server, sentences):
    """16 clients at once (two option sets): every answer equals the same request sent alone,
    and the server decoded them in fewer batches than requests."""
    bodies = [
        {"text": s} if i % 2 else {"text": [s, sentences[-1 - i]], "beam_size": 2, "n_best": 2}
        for i, s in enumerate(sentences)
    ]
    alone = [request(server.url, "/translate", b) for b in bodies]
    assert all(status == 200 for status, _ in alone), alone
    before = request(server.url, "/health")[1]["batching"]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda b: request(server.url, "/translate", b), bodies))
    after = request(server.url, "/health")[1]["batching"]
    for (status, got), (_, expected) in zip(together, alone, strict=True):
        assert status == 200, got
        items = got.get("translations", [got])
        for a, b in zip(items, expected.get("translations", [expected]), strict=True):
            assert [h["text"] for h in a["hypotheses"]] == [h["text"] for h in b["hypotheses"]]
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert after["sentences"] - before["sentences"] == sum(
        len(b["text"]) if isinstance(b["text"], list) else 1 for b in bodies
    )
    assert after["batches"] - before["batches"] < len(bodies)


def test_a_slow_client_does_not_block_others(server, sentences):
    """A client that sends half a request and waits (and one stuck in its headers) does not
    hold up the others; it gets its answer once it sends the rest."""
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    body = json.dumps({"text": sentences[2]}).encode()
    head = (
        f"POST /translate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with (
        socket.create_connection((host, port), timeout=30) as slow,
        socket.create_connection((host, port), timeout=30) as stuck,
    ):
        slow.sendall(head + body[: len(body) // 2])
        stuck.sendall(b"POST /translate HTTP/1.1\r\nHost: ")
        time.sleep(0.2)
        started = time.monotonic()
        for s in sentences[3:6]:
            status, answer = request(server.url, "/translate", {"text": s}, timeout=15)
            assert status == 200, answer
        assert time.monotonic() - started < 10
        slow.sendall(body[len(body) // 2 :])
        reply = b""
        while chunk := slow.recv(65536):
            reply += chunk
    status_line, _, payload = reply.partition(b"\r\n")
    assert b" 200 " in status_line, reply[:300]
    answer = json.loads(payload.partition(b"\r\n\r\n")[2])
    assert (
        answer["translation"]
        == request(server.url, "/translate", {"text": sentences[2]})[1]["translation"]
    )


BIG = "a" * 100_000
T = "/translate"
BAD_REQUESTS = [
    # (id, path, body (bytes are sent as they are), "STATUS the error's start")
    ("malformed-json", T, b'{"text": "Hallo",', "400 request body: malformed JSON"),
    ("not-utf8", T, b'{"text": "Gr\xfc\xdfe"}', "400 request body: not valid UTF-8"),
    ("not-json", T, b"text=Hallo", "415 request body: Content-Type must be application/json"),
    ("empty-body", T, b"", "422 request body: empty"),
    ("deep-json", T, b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "400 request body"),
    ("array-body", T, ["Hallo"], "422 request body: expected a JSON object"),
    ("no-text", T, {"beam_size": 2}, "422 text: required field missing"),
    ("text-number", T, {"text": 5}, "422 text: expected a string or a list of strings"),
    ("text-null", T, {"text": None}, "422 text: expected a string or a list of strings"),
    ("item-number", T, {"text": ["a", 5]}, "422 text[1]: expected a string, got an integer"),
    ("unknown-field", T, {"text": "a", "beam": 2}, "422 beam: unknown field"),
    ("empty-list", T, {"text": []}, "422 text: empty list"),
    ("65-sentences", T, {"text": ["a"] * 65}, "422 text: 65 sentences, the limit is 64"),
    ("100000-chars", T, {"text": ["a", BIG]}, "422 text[1]: 100000 characters, the limit is 2000"),
    ("100000-chars-str", T, {"text": BIG}, "422 text: 100000 characters, the limit is 2000"),
    ("beam-0", T, {"text": "a", "beam_size": 0}, "422 beam_size: must be from 1 to 1000"),
    ("beam-str", T, {"text": "a", "beam_size": "5"}, "422 beam_size: expected an integer"),
    ("beam-bool", T, {"text": "a", "beam_size": True}, "422 beam_size: expected an integer"),
    ("beam-float", T, {"text": "a", "beam_size": 2.5}, "422 beam_size: expected an integer"),
    ("beam-17", T, {"text": "a", "beam_size": 17}, "422 beam_size: 17 is over"),
    ("nbest-0", T, {"text": "a", "n_best": 0}, "422 n_best: must be at least 1"),
    ("nbest-3-beam-2", T, {"text": "a", "beam_size": 2, "n_best": 3}, "422 n_best: must not"),
    ("penalty-neg", T, {"text": "a", "length_penalty": -1}, "422 length_penalty: must be"),
    ("penalty-str", T, {"text": "a", "length_penalty": "x"}, "422 length_penalty: expected"),
    # scores would be infinite in float32
    ("penalty-huge", T, {"text": "a", "length_penalty": 1e308}, "422 length_penalty: must be a"),
    (
        "5000-digits",
        T,
        b'{"text": "a", "beam_size": ' + b"9" * 5000 + b"}",
        "400 request body: a number has more than 4300 digits",
    ),  # fmt: skip
    ("align-list", "/align", {"text": ["a"]}, "422 text: expected a string"),
    ("align-options", "/align", {"text": "a", "beam_size": 2}, "422 beam_size: unknown field"),
    ("align-long", "/align", {"text": BIG}, "422 text: 100000 characters"),
    ("over-1MB", T, {"text": "a" * 1_100_000}, "413 request body: over the limit of 1000000"),
    # valid JSON, but a lone surrogate escape is no Unicode text (the model cannot take it)
    ("surrogate", T, b'{"text": "\\ud800"}', "422 text: not valid Unicode: a lone surrogate"),
    (
        "surrogate-item",
        T,
        b'{"text": ["ok", "a\\udc00b"]}',
        "422 text[1]: not valid Unicode: a lone surrogate (\\udc00) at character 1",
    ),
    ("surrogate-align", "/align", b'{"text": "\\ud800"}', "422 text: not valid Unicode"),
    (
        "surrogate-key",
        T,
        b'{"text": "a", "\\ud800": 1}',
        '422 request body: a field name, "\\ud800"',
    ),
    ("surrogate-option", T, b'{"text": "a", "beam_size": "\\udfff"}', "422 beam_size: expected an"),
]


@pytest.mark.parametrize(
    "path, body, expected", [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_requests_get_a_4xx_naming_the_problem(server, path, body, expected):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "text/plain"} if raw == b"text=Hallo" else None
    tracebacks = server.stderr().count("Traceback")
    status, answer = request(server.url, path, raw=raw, headers=headers)
    assert f"{status} {answer.get('error')}".startswith(expected), answer
    assert set(answer) == {"error"}
    assert request(server.url, "/health")[0] == 200  # still serving
    assert server.stderr().count("Traceback") == tracebacks  # a bad request is no server error


def _post_with_headers(url: str, path: str, body: bytes, headers: list[tuple[str, str]]):
    """`(status, JSON answer)` of a POST with exactly these headers (and Content-Length): none
    added, several of one name kept (urllib would add a Content-Type)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


CONTENT_TYPES = [
    # (id, Content-Type header values, "STATUS the error's start", or 200)
    ("none", [], 200),  # curl --data-binary with -H 'Content-Type:': read as JSON
    ("empty", [""], 200),
    ("utf-8", ["application/json; charset=UTF-8"], 200),
    ("utf-8-quoted", ['application/json; charset="utf-8"'], 200),
    ("vendor-json", ["application/vnd.api+json"], 200),
    (
        "latin-1",
        ["application/json; charset=latin-1"],
        "415 request body: Content-Type 'application/json; charset=latin-1' announces charset "
        "latin-1; send the JSON as UTF-8",
    ),
    ("utf-16", ["application/json;charset=utf-16"], "415 request body: Content-Type"),
    ("text-plus-json", ["text/+json"], "415 request body: Content-Type must be application/json"),
    ("no-slash", ["foo+json"], "415 request body: Content-Type must be application/json"),
    ("two", ["text/plain", "application/json"], "400 request body: 2 Content-Type headers"),
    ("two-json", ["application/json", "application/json"], "400 request body: 2 Content-Type"),
]


@pytest.mark.parametrize(
    "ctypes, expected", [c[1:] for c in CONTENT_TYPES], ids=[c[0] for c in CONTENT_TYPES]
)
def test_content_type_is_json_or_absent(server, sentences, ctypes, expected):
    """A body is read as JSON when it says so (in UTF-8) or says nothing; anything else gets a
    4xx naming the header, the same for every header the app and FastAPI could read."""
    body = json.dumps({"text": sentences[0]}).encode()
    tracebacks = server.stderr().count("Traceback")
    status, answer = _post_with_headers(
        server.url, "/translate", body, [("Content-Type", value) for value in ctypes]
    )
    if expected == 200:
        assert status == 200, answer
        assert answer == request(server.url, "/translate", {"text": sentences[0]})[1]
    else:
        assert f"{status} {answer.get('error')}".startswith(expected), answer
        assert set(answer) == {"error"}
    assert server.stderr().count("Traceback") == tracebacks


@pytest.mark.parametrize(
    "path, headers, expected",
    [
        ("/translate?beam_size=0", [], "400 /translate?beam_size=0: query parameters are not read"),
        ("/translate", [("Content-Encoding", "gzip")], "415 request body: Content-Encoding 'gzip'"),
    ],
)
def test_query_strings_and_compressed_bodies_are_refused(server, path, headers, expected):
    """Not silently ignored (options in the query) or read as garbage (a gzip body)."""
    body = json.dumps({"text": "Hallo"}).encode()
    status, answer = _post_with_headers(
        server.url, path, body, [("Content-Type", "application/json"), *headers]
    )
    assert f"{status} {answer.get('error')}".startswith(expected), answer


def test_an_oversized_body_announced_with_expect_100_continue_is_refused_before_it_is_sent(server):
    status_line, answer = _raw_exchange(
        server.url,
        b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert status_line.startswith(b"HTTP/1.1 413"), status_line  # no "100 Continue" first
    assert answer["error"].startswith("request body: over the limit of 1000000 bytes")


def _raw_exchange(url: str, data: bytes) -> tuple[bytes, dict]:
    """Send raw bytes; the status line and JSON body of the answer (the server closes)."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    reply = b""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            reply += chunk
    status_line = reply.partition(b"\r\n")[0]
    return status_line, json.loads(reply.partition(b"\r\n\r\n")[2])


def test_a_huge_announced_body_is_refused_before_it_is_sent(server):
    status, answer = _raw_exchange(
        server.url,
        b"POST /translate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 10000000000\r\n\r\n{"text": "',
    )
    assert b" 413 " in status
    assert answer["error"].startswith("request body: over the limit of 1000000 bytes")
    assert request(server.url, "/health")[0] == 200


def test_wrong_method_and_path_get_json_errors(server):
    status, answer = request(server.url, "/translate")
    assert status == 405 and answer["error"].startswith("GET /translate: method not allowed")
    status, answer = request(server.url, "/nowhere")
    assert status == 404 and answer["error"].startswith("/nowhere: no such endpoint")


def test_a_trailing_slash_is_a_json_404_naming_the_endpoint(server):
    """Not a bare 307 redirect (urllib would follow it for a GET)."""
    for path, body in (("/translate/", {"text": "Hallo"}), ("/align/", {"text": "a"})):
        status, answer = request(server.url, path, body)
        assert status == 404
        assert answer == {
            "error": f"{path}: no such endpoint; did you mean {path[:-1]} (without the trailing "
            "slash)?"
        }
    status, answer = request(server.url, "/health/")
    assert status == 404 and answer["error"].startswith("/health/: no such endpoint; did you")


@pytest.mark.parametrize("path, media", [("/health", "application/json"), ("/", "text/html")])
def test_head_answers_like_get(server, path, media):
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("HEAD", path)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith(media)
        assert response.read() == b""
    finally:
        conn.close()


# -- the command line ----------------------------------------------------------------------------
def test_public_host_warns_and_ctrl_c_stops_cleanly(tiny_attention_run, tmp_path):
    served = start_server(
        tiny_attention_run, "--host", "0.0.0.0", "--timeout", "60", stderr_path=tmp_path / "err"
    )
    try:
        assert re.fullmatch(r"http://0\.0\.0\.0:\d+", served.url)
        port = urlsplit(served.url).port
        assert request(f"http://127.0.0.1:{port}", "/health")[0] == 200
        served.proc.send_signal(signal.SIGINT)
        assert served.proc.wait(30) == 0
    finally:
        served.stop()
    err = served.stderr()
    assert "warning: --host 0.0.0.0 is not a loopback address" in err
    assert "server stopped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("what", ["empty-dir", "missing", "untrained"])
def test_serving_a_directory_without_a_model_is_a_clear_error(what, tmp_path, capsys):
    from translator.pipelines.cli import main

    path = tmp_path / "run"
    if what != "missing":
        path.mkdir()
    if what == "untrained":
        (path / "config.yaml").write_text("name: x\n", encoding="utf-8")
    assert main(["serve", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("translator: error: "), err
    assert {
        "empty-dir": "is neither a run directory",
        "missing": "not found",
        "untrained": "has no trained model",
    }[what] in err
    assert "Traceback" not in err


def test_cli_rejects_bad_limits(capsys):
    from translator.pipelines.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "somewhere", "--max-sentences", "0"])
    assert e.value.code == 2
    assert "--max-sentences: must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["serve", "somewhere", "--workers", "0"])
    assert e.value.code == 2
    assert "--workers: must be at least 1" in capsys.readouterr().err


def test_serve_help_names_the_default_limits(capsys):
    from translator.pipelines.cli import main

    from translator.serving.app import ServeLimits

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, value in (
        ("--max-sentences", ServeLimits.max_sentences),
        ("--max-chars", ServeLimits.max_chars),
        ("--max-body-bytes", ServeLimits.max_body_bytes),
        ("--max-beam-size", ServeLimits.max_beam_size),
    ):
        assert re.search(rf"{flag} N [^-]*\(default {value}\)", text), flag


# -- in-process servers over a stand-in backend -------------------------------------------------
class FakeBackend:
    """Upper-cases; `boom` in a sentence raises; records every call."""

    name = "fake"
    has_attention = False

    def __init__(self, delay=0.0, fixed_options=False, defaults=None):
        self.delay = delay
        self.fixed_options = fixed_options
        self.defaults = defaults or {"beam_size": 1, "n_best": 1, "length_penalty": 0.0}
        self.calls: list[tuple[list[str], int]] = []

    def translate(self, texts, *, beam_size, n_best, length_penalty):
        self.calls.append((list(texts), beam_size))
        time.sleep(self.delay)
        if any("boom" in t for t in texts):
            raise RuntimeError("the model broke")
        return [[(f"{t.upper()} {k}", -float(k)) for k in range(n_best)] for t in texts]

    def align(self, text):
        raise AssertionError("not called: the backend has no attention")


@contextlib.contextmanager
def in_process(backend, limits=None, **batching):
    """`create_app(backend)` on uvicorn in a thread, on a free loopback port."""
    import uvicorn

    from translator.serving.app import create_app
    from translator.serving.server import bind

    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(create_app(backend, limits, **batching), log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def _post_all(url, bodies):
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: request(url, "/translate", b), bodies))


def test_batcher_joins_concurrent_requests_by_options():
    backend = FakeBackend(delay=0.2)
    bodies = [{"text": f"satz {i}", "beam_size": 1 + i % 2} for i in range(10)]
    bodies.append({"text": ["a", "b", "c"], "beam_size": 2, "n_best": 2})
    with in_process(backend, batch_window_ms=100) as url:
        answers = _post_all(url, bodies)
    for body, (status, answer) in zip(bodies, answers, strict=True):
        assert status == 200, answer
        if isinstance(body["text"], str):
            assert answer["translation"] == body["text"].upper() + " 0"
        else:
            assert [t["translation"] for t in answer["translations"]] == ["A 0", "B 0", "C 0"]
            assert [h["text"] for h in answer["translations"][1]["hypotheses"]] == ["B 0", "B 1"]
    assert len(backend.calls) < len(bodies)
    assert sum(len(texts) for texts, _ in backend.calls) == 13


class _TimedBackend(FakeBackend):
    """Records when each call ran (start, end) and how many ran at once at most."""

    def __init__(self, delay):
        super().__init__(delay=delay)
        self.lock, self.running, self.most = threading.Lock(), 0, 0

    def translate(self, texts, **options):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().translate(texts, **options)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_decode_that_many_batches_at_once(workers):
    """Requests with two option sets make two batches: with 2 workers they are decoded at once,
    with 1 one after the other; every answer is right either way."""
    backend = _TimedBackend(delay=0.5)
    bodies = [{"text": f"satz {i}", "beam_size": 1 + i % 2} for i in range(6)]
    with in_process(backend, batch_window_ms=300, workers=workers) as url:
        answers = _post_all(url, bodies)
        health = request(url, "/health")[1]["batching"]
    assert [a["translation"] for _, a in answers] == [f"SATZ {i} 0" for i in range(6)]
    assert health["workers"] == workers
    assert backend.most == workers
    assert {beam for _, beam in backend.calls} == {1, 2}  # a batch per option set


def test_batches_are_at_most_max_batch_size():
    backend = FakeBackend(delay=0.1)
    with in_process(backend, batch_window_ms=100, max_batch_size=4) as url:
        answers = _post_all(url, [{"text": f"satz {i}"} for i in range(12)])
    assert all(status == 200 for status, _ in answers)
    assert all(len(texts) <= 4 for texts, _ in backend.calls)
    assert len(backend.calls) < 12


def test_a_failing_batch_is_a_500_for_its_requests_only():
    backend = FakeBackend(delay=0.2)
    bodies = [{"text": "boom"}, {"text": "fine", "beam_size": 2}]
    with in_process(backend, batch_window_ms=50) as url:
        (bad, bad_answer), (good, good_answer) = _post_all(url, bodies)
        assert bad == 500
        assert bad_answer["error"].startswith("translation failed (RuntimeError: the model broke)")
        assert good == 200 and good_answer["translation"] == "FINE 0"
        assert request(url, "/translate", {"text": "again"})[1]["translation"] == "AGAIN 0"


def test_a_failing_request_fails_alone_in_its_batch():
    """The batch fails as a whole; its requests are decoded again one by one, so only the one
    that fails by itself gets the 500."""
    backend = FakeBackend()
    bodies = [{"text": "gut"}, {"text": "boom"}, {"text": ["a", "b"]}, {"text": "fein"}]
    with in_process(backend, batch_window_ms=500) as url:
        answers = _post_all(url, bodies)
    assert [status for status, _ in answers] == [200, 500, 200, 200], answers
    assert answers[1][1]["error"].startswith("translation failed (RuntimeError: the model broke)")
    assert answers[0][1]["translation"] == "GUT 0" and answers[3][1]["translation"] == "FEIN 0"
    assert [t["translation"] for t in answers[2][1]["translations"]] == ["A 0", "B 0"]
    assert sorted(backend.calls[0][0]) == sorted(["gut", "boom", "a", "b", "fein"])  # one batch
    assert sorted(texts for texts, _ in backend.calls[1:]) == [
        ["a", "b"],
        ["boom"],
        ["fein"],
        ["gut"],
    ]


class _OddBackend(FakeBackend):
    """Answers `odd` with a mapping instead of a list: the batcher's own code fails on it."""

    def translate(self, texts, **options):
        results = super().translate(texts, **options)
        return dict(enumerate(results)) if texts == ["odd"] else results


def test_the_batcher_keeps_working_after_its_own_error():
    with in_process(_OddBackend()) as url:
        status, answer = request(url, "/translate", {"text": "odd"}, timeout=10)
        assert status == 500 and answer["error"].startswith("translation failed (TypeError")
        status, answer = request(url, "/translate", {"text": "next"}, timeout=10)
        assert status == 200 and answer["translation"] == "NEXT 0"


def test_a_lone_surrogate_fails_alone_next_to_valid_requests(api, sentences):
    """The audit's case on the real model: sent with four valid requests in one batching window,
    the bad one gets a 422 at validation and the others their translations."""
    from translator.serving.backend import PythonBackend

    bodies = [b'{"text": ["ok", "\\ud800"]}'] + [
        json.dumps({"text": s}).encode() for s in sentences[:4]
    ]
    with in_process(PythonBackend(api), batch_window_ms=300) as url:
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: request(url, "/translate", raw=b), bodies))
    assert answers[0][0] == 422
    assert answers[0][1]["error"].startswith("text[1]: not valid Unicode: a lone surrogate")
    assert [status for status, _ in answers[1:]] == [200] * 4, answers
    assert [a["translation"] for _, a in answers[1:]] == api.translate(sentences[:4])


def test_an_export_fixes_its_options():
    backend = FakeBackend(
        fixed_options=True, defaults={"beam_size": 5, "n_best": 2, "length_penalty": 0.0}
    )
    with in_process(backend) as url:
        assert request(url, "/translate", {"text": "x", "beam_size": 5})[0] == 200
        status, answer = request(url, "/translate", {"text": "x", "beam_size": 3})
        assert status == 422
        assert answer["error"].startswith("beam_size: this export fixes beam_size at 5")
        # Fewer hypotheses than the export makes are given (the backend keeps the first ones).
        status, answer = request(url, "/translate", {"text": "x", "n_best": 1})
        assert status == 200 and len(answer["hypotheses"]) == 1, answer
        status, answer = request(url, "/translate", {"text": "x", "n_best": 3})
        assert status == 422 and answer["error"].startswith("n_best: this export fixes n_best at")
        # The error names the option the client gave, not one it implies (n_best 2 > beam 1).
        status, answer = request(url, "/translate", {"text": "x", "beam_size": 1})
        assert status == 422
        assert answer["error"].startswith("beam_size: this export fixes beam_size at 5"), answer
        health = request(url, "/health")[1]
        assert health["fixed_options"] is True and health["attention"] is False


def test_an_export_beam_over_the_servers_limit_does_not_start():
    from translator.serving.app import ServeLimits
    from translator.serving.server import ServeError, serve

    backend = FakeBackend(
        fixed_options=True, defaults={"beam_size": 5, "n_best": 2, "length_penalty": 0.0}
    )
    with pytest.raises(ServeError, match="decodes with beam 5, over --max-beam-size 4"):
        serve(backend, port=0, limits=ServeLimits(max_beam_size=4), timeout=1)
    assert backend.calls == []  # refused before the warm-up


def test_align_without_attention_is_a_400():
    with in_process(FakeBackend()) as url:
        status, answer = request(url, "/align", {"text": "Hallo."})
    assert status == 400
    assert answer["error"].startswith("this model has no attention")


def test_smaller_limits_apply():
    from translator.serving.app import ServeLimits

    limits = ServeLimits(max_body_bytes=100, max_sentences=2, max_chars=5, max_beam_size=2)
    with in_process(FakeBackend(), limits) as url:
        assert request(url, "/translate", {"text": ["a", "b", "c"]})[1]["error"].startswith(
            "text: 3 sentences, the limit is 2"
        )
        assert request(url, "/translate", {"text": "abcdef"})[1]["error"].startswith(
            "text: 6 characters, the limit is 5"
        )
        assert request(url, "/translate", {"text": "a", "beam_size": 3})[0] == 422
        assert request(url, "/translate", {"text": "a" * 200})[0] == 413


def test_serve_announces_its_port_and_stops_after_max_requests(capfd):
    from translator.serving.server import serve

    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("code", serve(FakeBackend(), port=0, max_requests=2)),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 20
    out = ""
    while "serving on" not in out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += capfd.readouterr().out
    match = re.search(r"^serving on (http://127\.0\.0\.1:(\d+))$", out, re.M)
    assert match, out
    assert request(match[1], "/health")[0] == 200
    assert request(match[1], "/translate", {"text": "eins"})[1]["translation"] == "EINS 0"
    thread.join(20)
    assert result == {"code": 0}


def test_serve_stops_after_its_timeout(capfd):
    from translator.serving.server import serve

    started = time.monotonic()
    assert serve(FakeBackend(), port=0, timeout=0.2) == 0
    assert time.monotonic() - started < 10
    assert re.fullmatch(r"serving on http://127\.0\.0\.1:\d+\n", capfd.readouterr().out)


def test_a_request_over_the_time_limit_gets_a_503_and_its_queued_work_is_dropped():
    from translator.serving.app import ServeLimits

    backend = FakeBackend(delay=2.0)
    with in_process(backend, ServeLimits(max_request_seconds=1), workers=1) as url:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(request, url, "/translate", {"text": "erster"})
            time.sleep(0.3)  # "erster" is decoding; "zweiter" waits in the queue
            second = pool.submit(request, url, "/translate", {"text": "zweiter"})
            answers = [first.result(), second.result()]
        time.sleep(2.5)  # the first batch ends; the second request's sentence is never decoded
        assert [t for texts, _ in backend.calls for t in texts] == ["erster"]
        assert request(url, "/health")[0] == 200
    for status, answer in answers:
        assert status == 503, answer
        assert "longer than this server's limit of 1 s (--max-request-seconds)" in answer["error"]


def test_a_client_that_disconnects_while_queued_is_not_decoded():
    backend = FakeBackend(delay=1.5)
    with in_process(backend, workers=1) as url:
        port = int(url.rsplit(":", 1)[1])
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(request, url, "/translate", {"text": "bleibt"})
            time.sleep(0.3)
            body = json.dumps({"text": "geht"}).encode()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(
                    b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(0.3)  # queued behind "bleibt"; then the client leaves
            assert busy.result()[0] == 200
        time.sleep(0.5)
        assert [t for texts, _ in backend.calls for t in texts] == ["bleibt"]


def test_stopping_the_server_answers_every_request_with_a_json_503():
    """Queued requests at once; a batch still decoding when the grace period ends, just
    before it (uvicorn would cancel it with a plain-text 500)."""
    import uvicorn

    from translator.serving.app import create_app
    from translator.serving.server import _server_class, bind

    backend = FakeBackend(delay=4.0)
    app = create_app(backend, workers=1)
    sock = bind("127.0.0.1", 0)
    server = _server_class()(uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=2))
    server.batcher = app.state.batcher
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with ThreadPoolExecutor(2) as pool:
        decoding = pool.submit(request, url, "/translate", {"text": "eins"})
        time.sleep(0.3)
        queued = pool.submit(request, url, "/translate", {"text": "zwei"})
        time.sleep(0.3)
        stopped = time.monotonic()
        server.should_exit = True
        answers = [queued.result(), decoding.result()]
        answered = time.monotonic() - stopped
    thread.join(20)
    sock.close()
    for status, answer in answers:
        assert status == 503, answer
        assert answer["error"] == "the server is shutting down; send the request again"
    assert answered < 3.0  # before the decoding batch (4 s) ends
    assert [t for texts, _ in backend.calls for t in texts] == ["eins"]
