"""The studio's web server in a thread beside the pipeline, and its clean shutdown.

The socket is bound before anything else starts, so a port already in use
is a one-line error before the camera opens. uvicorn serves from its own
thread (it installs no signal handlers there: Ctrl-C and SIGTERM stay with
the pipeline's loop, which stops first and ends every stream), and ``stop``
then lets the open requests finish within a grace period.
"""
from __future__ import annotations

import socket
import threading

import uvicorn
from starlette.types import ASGIApp

from ipmcam.errors import UserError

GRACE_SECONDS = 3  #: how long open requests get to finish at shutdown


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one); a UserError when that cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)") from None
    return sock


class StudioServer:
    """uvicorn serving ``app`` on an already bound socket, from a daemon thread."""

    def __init__(self, app: ASGIApp, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=GRACE_SECONDS)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True, name="ipmcam-studio-server")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish open requests (at most the grace period), then stop serving and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=GRACE_SECONDS + 2.0)
        self.sock.close()
