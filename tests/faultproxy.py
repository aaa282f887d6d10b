"""A fault-injecting TCP proxy: put it between the gateway and PostgreSQL or Redis, then cut, pause or slow it.

The shared PostgreSQL and Redis must never be stopped (other suites use them), so a test points
the gateway at this proxy instead and breaks the path: `cut()` closes every connection and
refuses new ones (the service is down), `pause()` stops forwarding bytes while keeping sockets
open (the service hangs), `slow(seconds)` delays every chunk, `restore()` brings it back. It
runs its own asyncio loop in a thread, so tests stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any


class FaultProxy:
    """127.0.0.1:<port> → target, with the faults above."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.mode = "up"
        self.delay = 0.0
        self._open = threading.Event()
        self._resume: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    # -- control (from the test's thread) -----------------------------------------------------------------
    def start(self) -> FaultProxy:
        self.thread.start()
        if not self._open.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def cut(self) -> None:
        """Down: every open connection is reset and new ones are refused."""
        self._call(self._cut)

    def pause(self) -> None:
        """Hung: connections stay open (new ones are accepted) but no byte is forwarded."""
        self._call(self._set, "paused", 0.0)

    def slow(self, seconds: float) -> None:
        """Slow: every chunk in either direction waits `seconds`."""
        self._call(self._set, "up", seconds)

    def restore(self) -> None:
        """Back to normal (the service 'returns')."""
        self._call(self._restore)

    def stop(self) -> None:
        self._call(self._close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def _call(self, fn: Any, *args: Any) -> None:
        asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout=5)

    # -- the loop -------------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._resume = asyncio.Event()
        self._resume.set()
        self.loop.run_until_complete(self._listen())
        self._open.set()
        self.loop.run_forever()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def _set(self, mode: str, delay: float) -> None:
        assert self._resume is not None
        self.mode, self.delay = mode, delay
        if mode == "paused":
            self._resume.clear()
        else:
            self._resume.set()

    async def _cut(self) -> None:
        self.mode = "down"
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _restore(self) -> None:
        await self._set("up", 0.0)

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "down":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._resume is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._resume.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.mode == "down":
                    break
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
