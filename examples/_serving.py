"""Process plumbing for the example: serve an ASGI app on an inherited socket, run children.

The parent binds each server's socket itself (127.0.0.1, port 0, so the OS picks a free port)
and hands the listening socket to the child process, which serves on it with uvicorn. The port
is known before the child starts and nothing can steal it; early connections wait in the
socket's backlog until the child is ready.

Child side::

    if __name__ == "__main__":
        serve_main(app, "widget-ranker")          # reads --fd N

Parent side::

    sock = listening_socket()
    child = Child.start("ranker", [sys.executable, "examples/widget_ranker.py"], sock, env, logs)
    ...
    child.stop()                                   # SIGTERM by PID, wait, SIGKILL if needed
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Child", "listening_socket", "serve_main"]


def serve_main(app: Any, name: str) -> None:
    """Serve ``app`` with uvicorn on the listening socket given as ``--fd`` (child side)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog=name)
    parser.add_argument("--fd", type=int, required=True, help="inherited listening socket")
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1 on a free port (parent side)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class Child:
    """A server subprocess started by the example, stopped by its PID."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        """Base URL of the child's server."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls,
        name: str,
        argv: list[str],
        sock: socket.socket,
        env: dict[str, str],
        log_dir: Path,
    ) -> Child:
        """Start ``argv --fd N`` with ``sock`` inherited; stdout and stderr go to a log file."""
        log_path = log_dir / f"{name}.log"
        fd = sock.fileno()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*argv, "--fd", str(fd)],
                pass_fds=(fd,),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        port = int(sock.getsockname()[1])
        sock.close()  # the child holds its own copy
        return cls(name, process, log_path, port)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (uvicorn shuts down gracefully, the SDK flushes at exit), then wait."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return int(self.process.returncode)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the child's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
