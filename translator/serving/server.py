"""`translator serve`: the app on uvicorn, from Python.

Once the socket listens, `serve` prints one line, `serving on http://HOST:PORT`, to stdout (so a
script can start it with `--port 0` and read the port). It stops on Ctrl-C or SIGTERM, after
`max_requests` requests, or after `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from pathlib import Path

from translator.config import DecodeConfig
from translator.serving.app import ServeLimits, create_app
from translator.serving.backend import Backend, open_backend


class ServeError(RuntimeError):
    """The server cannot start (e.g. the address is in use)."""


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def url_of(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on `host:port` (port 0: a free port)."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as e:
        raise ServeError(f"--host {host}: cannot resolve it ({e})") from None
    errors = []
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as clients try it
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.set_inheritable(True)
            return sock
        except OSError as e:
            sock.close()
            errors.append(e.strerror or str(e))
    raise ServeError(f"cannot listen on {url_of(host, port)}: {'; '.join(errors)}")


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, announcing itself once listening and stopping after `timeout`."""

        announce: str = ""
        timeout: float | None = None
        batcher = None  # the app's Batcher

        async def shutdown(self, sockets=None) -> None:
            """uvicorn's shutdown (stop listening, wait up to `timeout_graceful_shutdown` for
            the requests in flight, then cancel them), with answers for every request: queued
            ones get a JSON 503 at once, and those whose batch is still decoding just before
            the grace period ends (rather than uvicorn's plain-text 500 when it cancels)."""
            handle = None
            if self.batcher is not None:
                self.batcher.close()
                grace = max((self.config.timeout_graceful_shutdown or 0) - 1.0, 0.0)
                handle = asyncio.get_running_loop().call_later(grace, self.batcher.abandon)
            try:
                await super().shutdown(sockets=sockets)
            finally:
                if handle is not None:
                    handle.cancel()

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit:
                return
            if self.timeout is not None:
                asyncio.get_running_loop().call_later(self.timeout, self._time_up)
            print(self.announce, flush=True)

        def _time_up(self) -> None:
            self.should_exit = True

    return Server


def warm_up(backend: Backend) -> None:
    """Decode once with the default options, so the first request does not pay the tracing."""
    backend.translate(["Hallo."], **backend.defaults)


def serve(
    path: str | Path | Backend,
    host: str = "127.0.0.1",
    port: int = 8080,
    limits: ServeLimits | None = None,
    batch_window_ms: float = 5.0,
    max_batch_size: int = 64,
    workers: int = DecodeConfig.workers,
    max_requests: int | None = None,
    timeout: float | None = None,
) -> int:
    """Serve a run directory, an export directory or a `Backend` over HTTP until stopped.

    Args:
        path: a trained run directory, an export directory, or a backend.
        host: the address to bind; other than a loopback address, a warning goes to stderr.
        port: the TCP port; 0 picks a free one (printed in the `serving on` line).
        limits: request limits (default `ServeLimits()`).
        batch_window_ms, max_batch_size: the micro-batcher's window and batch size.
        workers: batches decoded at once, each in a thread of its own.
        max_requests: stop after this many requests (for tests and load tests).
        timeout: stop after this many seconds.

    Returns:
        0 once the server has stopped.

    Raises:
        ServeError: the address cannot be bound.
        FileNotFoundError: `path` holds no model (see `open_backend`).
    """
    import uvicorn

    backend = open_backend(path) if isinstance(path, str | Path) else path
    limits = limits or ServeLimits()
    fixed_beam = backend.defaults.get("beam_size") if backend.fixed_options else None
    if fixed_beam is not None and fixed_beam > limits.max_beam_size:
        raise ServeError(
            f"{backend.name}: the export decodes with beam {fixed_beam}, over --max-beam-size "
            f"{limits.max_beam_size}; raise --max-beam-size or export with a smaller --beam-size"
        )
    if not is_loopback(host):
        print(
            f"warning: --host {host} is not a loopback address: anyone who can reach this "
            "machine on the network can use this server (it has no authentication)",
            file=sys.stderr,
            flush=True,
        )
    warm_up(backend)
    app = create_app(
        backend,
        limits,
        batch_window_ms=batch_window_ms,
        max_batch_size=max_batch_size,
        workers=workers,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's own would replace (and close) every logging handler
        access_log=False,
        limit_max_requests=max_requests,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    sock = bind(host, port)
    server = _server_class()(config)
    server.announce = f"serving on {url_of(host, sock.getsockname()[1])}"
    server.timeout = timeout
    server.batcher = app.state.batcher
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
