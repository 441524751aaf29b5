"""``ipmcam studio``: the live filter, with a web page on this machine to steer it and watch it.

Every option of ``ipmcam live`` works here too; the page, its stream and the
OBS overlay are one more output beside them. Ctrl-C or SIGTERM stops the
pipeline after its current frame, which ends every stream, then the server.
"""
from __future__ import annotations

import argparse
import socket
import webbrowser
from dataclasses import dataclass
from typing import Any

from ipmcam.realtime.cli import LiveRun, add_live_args, run_pipeline, start_live
from ipmcam.studio.app import create_app
from ipmcam.studio.guard import check_exposure, is_loopback
from ipmcam.studio.hub import FrameHub
from ipmcam.studio.remote import RemoteControls
from ipmcam.studio.server import StudioServer, bind

DEFAULT_PORT = 8000


def page_url(host: str, port: int, token: str | None, path: str = "") -> str:
    """The URL to open: the host as given (this machine's name for a wildcard address), with the token."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/{path}" + (f"?token={token}" if token else "")


def register(sub: Any) -> None:
    """Add the ``studio`` subcommand."""
    p = sub.add_parser("studio", help="the live filter steered from a web page; MJPEG stream and OBS overlay",
                       description="Runs the live pipeline and a web server on this machine: open the printed URL "
                                   "to steer the filter; add its /overlay page to OBS as a Browser Source.")
    add_live_args(p)
    w = p.add_argument_group("web page")
    w.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; any other needs --token)")
    w.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    w.add_argument("--token", help="secret every request must carry (the printed URL carries it)")
    w.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.set_defaults(handler=cmd_studio)


@dataclass
class Studio:
    """A live pipeline with its web server started beside it (the pipeline not yet running)."""

    live: LiveRun
    hub: FrameHub
    remote: RemoteControls
    server: StudioServer

    @property
    def port(self) -> int:
        return self.server.sock.getsockname()[1]


def open_studio(args: argparse.Namespace) -> Studio:
    """Check the options, bind the port, open the camera and sinks, start serving; ``run_pipeline`` comes next."""
    check_exposure(args.host, args.token)
    sock = bind(args.host, args.port)  # a port in use fails before the camera opens
    try:
        hub = FrameHub()
        live = start_live(args, [hub])
    except BaseException:
        sock.close()
        raise
    remote = RemoteControls(live.pipeline, hub, live.plan.labels[0], precision=args.precision)
    live.callbacks.append(remote.on_frame)
    server = StudioServer(create_app(remote, hub, args.token, loopback_only=is_loopback(args.host)), sock)
    server.start()
    return Studio(live, hub, remote, server)


def cmd_studio(args: argparse.Namespace) -> int:
    studio = open_studio(args)
    url = page_url(args.host, studio.port, args.token)
    print(f"ipmcam studio: {url}\n  OBS Browser Source: {page_url(args.host, studio.port, args.token, 'overlay')}",
          flush=True)
    if args.open:
        webbrowser.open(url)
    try:
        stats, code = run_pipeline(studio.live.pipeline, None, "studio", studio.live.on_frame)
    finally:
        studio.server.stop()
    print(f"{stats.frames} frames, {stats.fps:.1f} fps, {stats.dropped} stale camera frames dropped")
    return code
