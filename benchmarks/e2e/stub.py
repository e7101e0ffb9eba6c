"""A minimal keep-alive HTTP/1.1 server standing in for a widget hub during ``bench_e2e.py``.

It answers every request with the same small JSON body, parsing only enough to find the end of
each request (no bodies expected), so it costs far less CPU per request than the app under test and
is the same for every configuration. Binds 127.0.0.1 on a free port and prints
``PORT <n>`` on stdout once listening.

Run: ``python benchmarks/e2e/stub.py``; stop with SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

__all__ = ["main"]

_BODY = b'{"items": [{"id": "w1", "name": "widget one"}, {"id": "w2", "name": "widget two"}]}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


class _Hub(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        count = self._buf.count(b"\r\n\r\n")
        if count and self._transport is not None:
            self._buf = self._buf[self._buf.rfind(b"\r\n\r\n") + 4 :]
            self._transport.write(_RESPONSE * count)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Hub, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
