"""Sandbox vendors: small local stand-ins for vendor APIs, for `labelhook run --demo` and the tests.

`serve_in_thread(app)` runs any of them under uvicorn on 127.0.0.1 on an ephemeral port, on a
daemon thread, so the demo needs no second process and never listens beyond the loopback.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from starlette.types import ASGIApp


@dataclass
class RunningSandbox:
    """A sandbox being served: its base URL (``http://127.0.0.1:<port>``) and how to stop it."""

    url: str
    port: int
    _server: object
    _thread: threading.Thread
    _sock: socket.socket

    def stop(self) -> None:
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(10)
        self._sock.close()


def serve_in_thread(app: ASGIApp, *, startup_timeout: float = 10.0) -> RunningSandbox:
    """Serve ``app`` on 127.0.0.1 (ephemeral port) from a daemon thread; return once it accepts."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="labelhook-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.02)
    return RunningSandbox(f"http://127.0.0.1:{port}", port, server, thread, sock)
