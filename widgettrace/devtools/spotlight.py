"""Start and stop a real Spotlight sidecar (npm ``@spotlightjs/spotlight``) on 127.0.0.1.

Spotlight is Sentry's local development UI: an SDK given ``spotlight="http://127.0.0.1:<port>/stream"``
(or ``SENTRY_SPOTLIGHT``) sends it a copy of every envelope, no DSN needed; the UI is served on the
same port, and ``GET /stream`` replays what it holds as server-sent events.

The node side lives next to this module in ``spotlight_node/``: ``package.json`` pins 4.11.8 and,
through ``overrides``, ``hono`` 4.12.25 (newer hono breaks every request); ``serve.mjs`` starts the
sidecar through the package's exported ``setupSpotlight`` bound to 127.0.0.1 (the stock CLI listens
on every interface and starts its own telemetry client) and prints the port it got. Its
``node_modules`` are installed by ``scripts/setup-receivers.sh`` (or the command
:func:`install_hint` prints).

Used by ``widgettrace dev`` and by the test suite's receiver (``tests/receivers/spotlight.py``)::

    sidecar = Spotlight(workdir).start()      # raises SpotlightUnavailable saying what to install
    print(sidecar.base_url, sidecar.url)      # UI, and the SDK's spotlight URL
    sidecar.stop()                            # ends the node process by its PID
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["NODE_DIR", "SPOTLIGHT_VERSION", "Spotlight", "SpotlightUnavailable", "install_hint"]

#: Where ``package.json``, ``serve.mjs`` and (once installed) ``node_modules`` live.
NODE_DIR = Path(__file__).resolve().parent / "spotlight_node"
SPOTLIGHT_VERSION = "4.11.8"


class SpotlightUnavailable(RuntimeError):
    """Spotlight could not be started; the message says what is missing and how to install it."""


def install_hint(node_dir: Path = NODE_DIR) -> str:
    """The exact commands that make Spotlight startable from ``node_dir``."""
    return (
        "install Node.js and npm (Debian/Ubuntu: `apt-get install nodejs npm`), then "
        f"`npm ci --prefix {node_dir}` (or, in a widgettrace checkout, scripts/setup-receivers.sh)"
    )


class Spotlight:
    """One Spotlight sidecar process, in its own process group (see the module docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        node: str | None = None,
        port: int = 0,
        node_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        #: ``serve.mjs`` and its ``node_modules`` (default: beside this module).
        self.node_dir = Path(node_dir).resolve() if node_dir is not None else NODE_DIR
        self.node = node or shutil.which("node") or ""
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / "spotlight.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        """Where the UI is (and the HTTP API: ``/health``, ``/stream``, ``/clear``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The value for the SDK's ``spotlight=`` option (and ``SENTRY_SPOTLIGHT``)."""
        return f"{self.base_url}/stream"

    def start(self, timeout: float = 30.0) -> Spotlight:
        if self._proc is not None:
            return self
        if not self.node:
            raise SpotlightUnavailable(f"node is not on PATH: {install_hint(self.node_dir)}")
        if not (self.node_dir / "node_modules" / "@spotlightjs" / "spotlight").is_dir():
            raise SpotlightUnavailable(
                f"Spotlight's npm packages are not installed in {self.node_dir}: "
                + install_hint(self.node_dir)
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The sidecar must not inherit the app's telemetry settings (nor report to them).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SENTRY_", "SPOTLIGHT_", "OTEL_", "WIDGETTRACE_"))
        }
        log = self._log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.node, str(self.node_dir / "serve.mjs"), str(self.port)],
                cwd=self.node_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self.port = self._read_port(timeout)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_port(self, timeout: float) -> int:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        stdout = proc.stdout
        result: list[bytes] = []
        # readline() has no timeout; a thread keeps a hung node from hanging the caller.
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = result[0] if result else b""
        try:
            info = json.loads(line)
            return int(info["port"])
        except (ValueError, KeyError, TypeError):
            raise SpotlightUnavailable(
                f"Spotlight reported no port within {timeout}s (exit code {proc.poll()}): "
                f"{line[:200]!r} {self.log_tail()}"
            ) from None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise SpotlightUnavailable(f"no answer on {self.base_url}: {exc!r}") from exc
            time.sleep(0.1)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """End the node process (by its process group, which holds only it) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Spotlight:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def clear(self) -> None:
        """Empty Spotlight's buffer (``DELETE /clear``)."""
        request = urllib.request.Request(f"{self.base_url}/clear", method="DELETE")
        with urllib.request.urlopen(request, timeout=5):
            pass
