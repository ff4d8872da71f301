"""A TCP proxy in front of the shared Postgres, in the test's event loop: a Postgres outage for one API process
without stopping the database everybody else uses.

`cut("refuse")` drops every proxied connection and refuses new ones (Postgres stopped, host down);
`cut("starting_up")` drops them and answers new ones as a restarting Postgres does (SQLSTATE 57P03, "the
database system is starting up"); `restore()` lets connections through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

_SSL_REQUEST = 80877103


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _starting_up() -> bytes:
    fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
    return b"E" + struct.pack("!i", len(fields) + 4) + fields


class PgProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "open"
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        await self._close_listener()
        self._drop_all()

    async def cut(self, mode: str = "refuse") -> None:
        assert mode in ("refuse", "starting_up")
        self.mode = mode
        if mode == "refuse":
            await self._close_listener()
        self._drop_all()

    async def restore(self) -> None:
        self.mode = "open"
        if self._server is None:
            await self.start()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "starting_up":
            await self._refuse_as_starting_up(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _refuse_as_starting_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            length, code = struct.unpack("!ii", await reader.readexactly(8))
            if code == _SSL_REQUEST:  # "no TLS here", then the real startup message
                writer.write(b"N")
                await writer.drain()
                length, code = struct.unpack("!ii", await reader.readexactly(8))
            await reader.readexactly(length - 8)
            writer.write(_starting_up())
            await writer.drain()
        writer.transport.abort()
