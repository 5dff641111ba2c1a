"""A real S3-compatible server in its own process (so a test can SIGSTOP it), and a small HTTP proxy in front
of it that fails a share of the requests the way stores do (500, 503, 503 SlowDown, a reset connection).
Both listen on 127.0.0.1 only; the proxy is bounded (request bodies up to 64 MiB, 30 s upstream timeout)."""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 2**20
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_process() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """moto's standalone server as a child process (SIGSTOP/SIGCONT stall it for real)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("moto server did not start")
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


class FailingProxy:
    """Forwards to the upstream server; fails `share` of the requests (seeded), before forwarding or after."""

    FAULTS = ("500", "503", "slowdown", "reset", "after")

    def __init__(self, upstream_port: int, share: float, seed: int = 0) -> None:
        self.upstream, self.share = upstream_port, share
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = dict.fromkeys(self.FAULTS, 0) | {"ok": 0}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FailingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _draw(self) -> str:
        with self.lock:
            fault = self.random.choice(self.FAULTS) if self.random.random() < self.share else "ok"
            self.counts[fault] += 1
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise ValueError("request body too large for the test proxy")
                return self.rfile.read(length)

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
                self.send_header("Content-Length", length if self.command == "HEAD" else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            def _error(self, status: int, code: str) -> None:
                body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                self._reply(status, [("Content-Type", "application/xml")], body)

            def _forward(self) -> None:
                body = self._body()
                fault = proxy._draw()
                if fault == "500":
                    return self._error(500, "InternalError")
                if fault == "503":
                    return self._error(503, "ServiceUnavailable")
                if fault == "slowdown":
                    return self._error(503, "SlowDown")
                if fault == "reset":
                    return self._reset()
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                    headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                if fault == "after":  # done upstream, the answer lost: the client must retry safely
                    return self._reset()
                self._reply(answer.status, answer.getheaders(), data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
