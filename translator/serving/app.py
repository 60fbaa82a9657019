"""The HTTP API (FastAPI): `POST /translate`, `POST /align`, `GET /health`, `GET /` (the page).

Every error is JSON `{"error": "<one sentence naming the field>"}`: FastAPI's validation and HTTP
error handlers are replaced so the shape is the same for a malformed body, a wrong type, a limit
or an unexpected failure. Interactive OpenAPI docs are at `/docs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from translator.config import ConfigError, DecodeConfig
from translator.io import unicode_problem
from translator.serving.backend import Backend
from translator.serving.batcher import Batcher, Options, ShuttingDown

log = logging.getLogger("translator.serving")
PAGE = Path(__file__).parent / "static" / "index.html"
OPTION_KEYS = ("beam_size", "n_best", "length_penalty")
ENDPOINTS = ("/translate", "/align", "/health")
EXAMPLE = "Das Auto steht in der Garage."


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for; larger requests get a 4xx naming the limit."""

    max_body_bytes: int = 1_000_000  # 413 above
    max_sentences: int = 64  # sentences per request
    max_chars: int = 2000  # characters per sentence
    max_beam_size: int = 16
    # A /translate request still waiting after this many seconds gets a 503 (its sentences are
    # dropped if their batch has not started; a batch being decoded runs to its end).
    max_request_seconds: int = 120

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name}: must be a whole number of at least 1, got {value!r}")


# -- request and response bodies ---------------------------------------------------------------
def _json_type(value: Any) -> str:
    """The JSON name of a value's type, with the value when it is short."""
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    name = names.get(type(value), type(value).__name__)
    try:
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, list) else ""
    except (TypeError, ValueError):  # not a JSON value (e.g. bytes): named, not shown
        shown = ""
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name}" + (f" ({shown})" if shown and len(shown) <= 40 else "")


def _check_encodable(text: str, path: str) -> None:
    """Raise a validation error naming `path` when `text` cannot be encoded as UTF-8: JSON lets a
    `\\ud800` escape stand alone, but a lone surrogate is no Unicode text and no model takes it."""
    problem = unicode_problem(text)
    if problem is not None:
        at, char = problem
        raise PydanticCustomError(
            "text_encoding",
            "not valid Unicode: a lone surrogate ({char}) at character {at}; a \\ud800-\\udfff "
            "escape must be one half of a high-low pair",
            {"char": char, "at": at, "path": path},
        )


class TranslateRequest(BaseModel):
    """One sentence, or a list of sentences, with optional decoding options (the server's
    defaults otherwise; see `GET /health`)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"text": EXAMPLE}, {"text": [EXAMPLE, "Guten Morgen."], "beam_size": 5}]
        },
    )

    text: str | list[str] = Field(description="a sentence, or a list of sentences")
    beam_size: int | None = Field(None, description="beam size (1 = greedy)")
    n_best: int | None = Field(None, description="hypotheses per sentence, at most beam_size")
    length_penalty: float | None = Field(None, description="length penalty alpha (0 = none)")

    @field_validator("text", mode="before")
    @classmethod
    def _text_is_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise PydanticCustomError(
                        "sentence_type",
                        "expected a string, got {got}",
                        {"got": _json_type(item), "path": f"text[{i}]"},
                    )
                _check_encodable(item, f"text[{i}]")
        elif isinstance(value, str):
            _check_encodable(value, "text")
        else:
            raise PydanticCustomError(
                "text_type",
                "expected a string or a list of strings, got {got}",
                {"got": _json_type(value)},
            )
        return value


class AlignRequest(BaseModel):
    """One sentence to translate with the default options and align."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"text": EXAMPLE}]}
    )

    text: str = Field(description="one sentence")

    @field_validator("text", mode="before")
    @classmethod
    def _text_is_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            _check_encodable(value, "text")
        return value  # anything else: the strict `str` check names its type


class Hypothesis(BaseModel):
    text: str
    score: float | None = Field(description="normalised log-probability (higher is better)")


class Translation(BaseModel):
    translation: str = Field(description="the best translation")
    score: float | None
    hypotheses: list[Hypothesis] = Field(description="the n-best list, best first")


class Translations(BaseModel):
    translations: list[Translation] = Field(description="one per input sentence, in order")


class AlignmentOut(BaseModel):
    source_tokens: list[str]
    target_tokens: list[str] = Field(description="the output tokens, end of sentence included")
    translation: str
    attention: list[list[float]] = Field(
        description="one row per target token, one weight per source token"
    )


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, naming the field")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "malformed request body (not JSON, not UTF-8)"),
        (413, "request body over the size limit"),
        (415, "not a JSON request"),
        (422, "invalid field: wrong type, unknown field, over a limit, invalid option"),
        (500, "the model failed"),
    )
}


# -- errors --------------------------------------------------------------------------------------
def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """`{"error": message}`; characters of `message` that UTF-8 cannot encode (lone surrogates
    quoted from a request) are written as `\\udXXX` escapes."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _path(loc: tuple) -> str:
    """`("body", "text", 3)` -> `text[3]`."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation_error(err: dict, fields: str = "text") -> tuple[int, str]:
    """The status and one-sentence message of a pydantic / FastAPI validation error; `fields`
    lists the request's fields for an unknown one."""
    kind, loc, ctx = err.get("type", ""), tuple(err.get("loc", ())), err.get("ctx") or {}
    if kind == "json_invalid":
        where = f" at position {loc[1]}" if len(loc) > 1 else ""
        return 400, f"request body: malformed JSON ({ctx.get('error', 'invalid')}{where})"
    path = ctx.get("path") or _path(loc)
    given = err.get("input")
    if kind == "string_unicode":  # pydantic's own check: a field name with a lone surrogate
        shown = json.dumps(given) if isinstance(given, str) and len(given) <= 40 else "a name"
        where = f"{path}: a field name" if path else "request body: a field name"
        return 422, (
            f"{where}, {shown}, is not valid Unicode (a lone surrogate); the fields are {fields}"
        )
    if not path:
        example = 'a JSON object such as {"text": "Guten Morgen."}'
        if kind == "missing":
            return 422, f"request body: empty; send {example}"
        return 422, f"request body: expected {example}, got {_json_type(given)}"
    if kind == "missing":
        return 422, f"{path}: required field missing"
    if kind == "extra_forbidden":
        return 422, f"{path}: unknown field (the fields are {fields})"
    expected = {
        "int_type": "an integer",
        "float_type": "a number",
        "string_type": "a string",
        "list_type": "a list",
    }
    if kind in expected:
        return 422, f"{path}: expected {expected[kind]}, got {_json_type(given)}"
    message = err.get("msg", "invalid value")
    return 422, f"{path}: {message[:1].lower()}{message[1:]}"


JSON_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")  # a JSON body is UTF-8 (RFC 8259)


def content_type_problem(values: list[str]) -> tuple[int, str] | None:
    """None when the request's Content-Type header values announce JSON (`application/json`,
    `application/*+json`, with no charset or a UTF-8 one) or there is none (the body is read as
    JSON, as curl's `--data-binary` with `-H 'Content-Type:'` sends it); otherwise the status and
    message of the refusal: 415 for another media type or charset, 400 for several headers."""
    values = [v for v in values if v.strip()]
    if not values:
        return None
    if len(values) > 1:
        given = ", ".join(repr(v) for v in values)
        return 400, f"request body: {len(values)} Content-Type headers ({given}); send one"
    ctype = values[0]
    media, *params = (part.strip() for part in ctype.split(";"))
    kind, _, subtype = media.lower().partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return 415, (
            f"request body: Content-Type must be application/json, got {ctype!r} (with curl: "
            "-H 'Content-Type: application/json', or --json)"
        )
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in JSON_CHARSETS:
            return 415, (
                f"request body: Content-Type {ctype!r} announces charset {charset or '(empty)'}; "
                "send the JSON as UTF-8 (charset=utf-8, or no charset)"
            )
    return None


class _BodyGuard:
    """ASGI middleware before FastAPI: a POST body over the size limit -> 413 (by its
    Content-Length, or while reading it), a body that is not UTF-8 -> 400, and a Content-Type
    other than JSON -> 415 (see `content_type_problem`). The body, read once, is handed on to
    the app with the one header `Content-Type: application/json`, so FastAPI parses every body
    this guard lets through as JSON (also one sent without a Content-Type).

    A rejected body is still read (and dropped) up to `DRAIN_BYTES`, so that a client that sends
    its whole body before reading the answer gets the 413 instead of a broken connection; a body
    announced larger than that is refused at once."""

    DRAIN_BYTES = 32_000_000

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        ctypes = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-type"]
        too_big = (
            f"request body: over the limit of {self.limit} bytes; send fewer or shorter sentences"
        )
        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None
        if declared is not None and declared > self.limit:
            # A client that waits for `100 Continue` has sent nothing yet: answer at once.
            waits = headers.get("expect", "").lower() == "100-continue"
            drain = declared <= self.DRAIN_BYTES and not waits
            return await self._reject(413, too_big, scope, receive, send, drain=drain)
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            message = (
                f"request body: Content-Encoding {encoding!r} is not supported; send the JSON "
                "uncompressed"
            )
            return await self._reject(415, message, scope, receive, send)
        if scope.get("query_string"):
            message = (
                f"{scope['path']}?{scope['query_string'].decode('latin-1')[:100]}: query "
                "parameters are not read; give the options in the JSON body, e.g. "
                '{"text": "...", "beam_size": 5}'
            )
            return await self._reject(400, message, scope, receive, send)
        problem = content_type_problem(ctypes)
        if problem is not None:
            return await self._reject(*problem, scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                more = message.get("more_body", False)
                return await self._reject(413, too_big, scope, receive, send, drain=more)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            message = (
                f"request body: not valid UTF-8 (byte 0x{body[e.start]:02x} at position {e.start})"
            )
            return await _error(400, message)(scope, receive, send)
        sent = False
        scope = {
            **scope,
            "headers": [
                *((k, v) for k, v in scope["headers"] if k.lower() != b"content-type"),
                (b"content-type", b"application/json"),
            ],
        }

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, status, message, scope, receive, send, drain=True) -> None:
        if drain:
            size = 0
            while size <= self.DRAIN_BYTES:
                received = await receive()
                if received["type"] == "http.disconnect":
                    return
                size += len(received.get("body", b""))
                if not received.get("more_body", False):
                    break
        await _error(status, message, {"Connection": "close"})(scope, receive, send)


async def _disconnected(connection: Request) -> None:
    """Returns once the client has gone (the body is read: the server's next message for this
    request is the disconnect)."""
    while (await connection.receive())["type"] != "http.disconnect":
        pass


def _finite(score: float) -> float | None:
    return float(score) if math.isfinite(score) else None


def _translation(nbest: list[tuple[str, float]]) -> Translation:
    hyps = [Hypothesis(text=text, score=_finite(score)) for text, score in nbest]
    return Translation(translation=hyps[0].text, score=hyps[0].score, hypotheses=hyps)


# -- the app ---------------------------------------------------------------------------------------
def create_app(
    backend: Backend,
    limits: ServeLimits | None = None,
    *,
    batch_window_ms: float = 5.0,
    max_batch_size: int = 64,
    workers: int = DecodeConfig.workers,
) -> FastAPI:
    """The FastAPI app serving `backend` within `limits`.

    Requests to `/translate` are micro-batched (`batch_window_ms`, `max_batch_size`, `workers`
    batches decoded at once; see `translator.serving.batcher`); the batcher starts and stops
    with the app's lifespan.
    """
    limits = limits or ServeLimits()
    batcher = Batcher(
        backend, window_ms=batch_window_ms, max_batch_size=max_batch_size, workers=workers
    )
    page = PAGE.read_text(encoding="utf-8")
    fields = {
        "/translate": ", ".join(TranslateRequest.model_fields),
        "/align": ", ".join(AlignRequest.model_fields),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="translator",
        summary="German to English translation with a recurrent seq2seq model",
        description="`POST /translate` one sentence or a list; `POST /align` gives the attention "
        "of one sentence (attention models); `GET /health` the model, its default decoding "
        'options and the request limits. Every error is `{"error": "..."}`.',
        lifespan=lifespan,
        # `/translate/` is a 404 naming `/translate` (a JSON error), not a bare 307 redirect.
        redirect_slashes=False,
    )
    app.state.batcher = batcher
    app.add_middleware(_BodyGuard, max_body_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        known = fields.get(request.url.path, "text")
        status, message = describe_validation_error(exc.errors()[0], known)
        return _error(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            path = request.url.path
            message = (
                f"{path}: no such endpoint; the API is POST /translate, POST /align "
                "and GET /health (see /docs)"
            )
            if len(path) > 1 and path.rstrip("/") in ENDPOINTS:
                message = (
                    f"{path}: no such endpoint; did you mean {path.rstrip('/')} (without the "
                    "trailing slash)?"
                )
        elif exc.status_code == 400 and message == "There was an error parsing the body":
            cause = exc.__cause__
            why = f" ({type(cause).__name__})" if cause is not None else ""
            message = f"request body: cannot be read as JSON{why}"
            if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
                message = (
                    f"request body: a number has more than {sys.get_int_max_str_digits()} "
                    "digits; no option takes such a number"
                )
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"{request.method} {request.url.path}: method not allowed; use {allowed}"
        return _error(exc.status_code, message, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server log")

    def fail(status: int, message: str):
        raise HTTPException(status, message)

    def check_sentences(texts: list[str], single: bool) -> None:
        if not single and not texts:
            fail(422, "text: empty list; give at least one sentence")
        if len(texts) > limits.max_sentences:
            fail(422, f"text: {len(texts)} sentences, the limit is {limits.max_sentences}")
        for i, text in enumerate(texts):
            if len(text) > limits.max_chars:
                name = "text" if single else f"text[{i}]"
                fail(422, f"{name}: {len(text)} characters, the limit is {limits.max_chars}")

    def options(request: TranslateRequest) -> Options:
        given = {k: getattr(request, k) for k in OPTION_KEYS if getattr(request, k) is not None}
        merged = {**backend.defaults, **given}
        if backend.fixed_options:  # first, so that the error names the option the client gave
            for key, value in given.items():
                fixed = backend.defaults[key]
                fewer = key == "n_best" and isinstance(value, int) and 1 <= value <= fixed
                if value != fixed and not fewer:
                    at_most = " (n_best: at most that)" if key == "n_best" else ""
                    fail(
                        422,
                        f"{key}: this export fixes {key} at {fixed}{at_most}; export with other "
                        f"options, or serve the run directory to choose {key} per request",
                    )
        try:
            DecodeConfig(**merged)
        except ConfigError as e:
            fail(422, str(e).replace("decode.", ""))
        if given.get("beam_size", 0) > limits.max_beam_size:
            fail(
                422,
                f"beam_size: {given['beam_size']} is over this server's limit of "
                f"{limits.max_beam_size}",
            )
        return Options(
            beam_size=int(merged["beam_size"]),
            n_best=int(merged["n_best"]),
            length_penalty=float(merged["length_penalty"]),
        )

    @app.post(
        "/translate",
        response_model=Translation | Translations,
        responses=ERRORS,
        summary="Translate a sentence or a list of sentences",
    )
    async def translate(
        request: TranslateRequest, connection: Request
    ) -> Translation | Translations:
        """A string gives `{"translation", "score", "hypotheses"}`; a list gives
        `{"translations": [...]}`, one such object per sentence. Concurrent requests are decoded
        together in batches."""
        single = isinstance(request.text, str)
        texts = [request.text] if single else request.text
        check_sentences(texts, single)
        chosen = options(request)
        work = asyncio.ensure_future(batcher.translate(texts, chosen))
        gone = asyncio.ensure_future(_disconnected(connection))
        done, _ = await asyncio.wait(
            {work, gone}, timeout=limits.max_request_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        gone.cancel()
        if work not in done:  # its sentences leave the queue (a running batch is not stopped)
            work.cancel()
            if gone in done:
                fail(400, "the client disconnected before its translation was ready")
            fail(
                503,
                f"the translation took longer than this server's limit of "
                f"{limits.max_request_seconds} s (--max-request-seconds); send fewer or shorter "
                "sentences or a smaller beam_size, or try again when the server is less busy",
            )
        try:
            results = work.result()
        except ShuttingDown as e:
            fail(503, str(e))
        except Exception as e:
            log.error("translation failed", exc_info=e)
            fail(500, f"translation failed ({type(e).__name__}: {e}); see the server log")
        if single:
            return _translation(results[0])
        return Translations(translations=[_translation(r) for r in results])

    @app.post(
        "/align",
        response_model=AlignmentOut,
        responses=ERRORS,
        summary="Translate one sentence and return its attention (attention models)",
    )
    async def align(request: AlignRequest) -> AlignmentOut:
        """The best translation with the default options, its tokens and the attention matrix:
        `attention[t][s]` is the weight output token `t` gives source token `s`."""
        if not backend.has_attention:
            fail(
                400,
                "this model has no attention (model.decoder.attention is none), so it has no "
                "alignments; serve a model trained with attention: bahdanau or luong",
            )
        check_sentences([request.text], single=True)
        try:
            found = await batcher.call(backend.align, request.text)
        except ShuttingDown as e:
            fail(503, str(e))
        except ValueError as e:
            fail(400, str(e))
        except Exception as e:
            log.error("alignment failed", exc_info=e)
            fail(500, f"alignment failed ({type(e).__name__}: {e}); see the server log")
        return AlignmentOut(**{k: found[k] for k in AlignmentOut.model_fields})

    @app.head("/health", include_in_schema=False)  # HEAD: as GET, headers only
    @app.get("/health", summary="The model, its default options and the request limits")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": backend.name,
            "attention": bool(backend.has_attention),
            "fixed_options": bool(backend.fixed_options),
            "defaults": dict(backend.defaults),
            "limits": dataclasses.asdict(limits),
            "batching": {
                "window_ms": batch_window_ms,
                "max_batch_size": max_batch_size,
                "workers": workers,
                "batches": batcher.batches,
                "sentences": batcher.sentences,
            },
        }

    @app.head("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'; img-src 'self' data:",
                "Cache-Control": "no-cache",
            },
        )

    return app
