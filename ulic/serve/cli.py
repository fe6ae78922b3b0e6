"""`ulic serve`: run the web app on the waitress WSGI server, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ulic.errors import UlicError

DEFAULT_PORT = 8765
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def make_server(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, max_upload_mb: float = 32, max_pixels: int = 16_000_000
) -> Any:
    """A waitress server for the app, bound but not yet running (port 0: any free port; the
    bound one is `server.effective_port`). Stop it with `stop(server)`."""
    try:
        from waitress import create_server

        from ulic.serve.app import create_app
    except ImportError as e:
        raise UlicError(
            f"ulic serve needs Flask and waitress ({e.name} is missing): " "pip install 'ulic[serve]'"
        ) from None
    limit = int(max_upload_mb * 2**20)
    app = create_app(max_upload_bytes=limit, max_pixels=max_pixels)
    # the app answers uploads over the limit with a message; waitress (which spools bodies to
    # disk) cuts off those over twice the limit itself, with a plain 413
    return create_server(
        app,
        host=host,
        port=port,
        threads=4,
        max_request_body_size=2 * limit + 2**20,
        clear_untrusted_proxy_headers=True,
    )


def stop(server: Any) -> None:
    """Close a server started with `make_server(...).run()` in another thread."""
    server.task_dispatcher.shutdown(timeout=5)
    server.close()


def cmd_serve(a: argparse.Namespace) -> int:
    if a.max_upload_mb <= 0 or a.max_pixels <= 0:
        raise UlicError("--max-upload-mb and --max-pixels must be positive")
    server = make_server(a.host, a.port, a.max_upload_mb, int(a.max_pixels * 1e6))
    if a.host not in LOOPBACK:
        print(f"ulic: notice: serving on {a.host}: anyone who can reach this port can use it", file=sys.stderr)
    host = f"[{a.host}]" if ":" in a.host else a.host
    print(f"ulic serve: open http://{host}:{server.effective_port}/ (Ctrl+C stops)", flush=True)
    try:
        server.run()
    finally:
        stop(server)
    return 0


def add_serve_parser(sub: Any) -> None:
    """Add the `serve` subcommand to the `ulic` argument parser."""
    s = sub.add_parser("serve", help="local web app: drop an image, compare original and decoded")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this " "machine only)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--max-upload-mb", type=float, default=32, help="largest upload (default 32 MB)")
    s.add_argument(
        "--max-pixels", type=float, default=16, metavar="MPIXEL", help="largest image in megapixels (default 16)"
    )
    s.set_defaults(func=cmd_serve)
