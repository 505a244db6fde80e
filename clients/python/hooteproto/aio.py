"""The asyncio client: one DEALER shared by any number of concurrent requests; a reader task
hands each reply to the request with its id. Idempotent requests are resent (same id) after
each attempt timeout, on a fresh socket, so a restarted server is reached again. A monitor
socket reports a dropped connection: requests in flight stop waiting at once, resent if
idempotent, else UNAVAILABLE (PROTOCOL.md §9)."""

from __future__ import annotations

import asyncio
import os

import zmq
import zmq.asyncio

from hooteproto._calls import Calls
from hooteproto._core import LOST, Framer, connection_lost, is_idempotent, load_key, unwrap
from hooteproto.errors import HootError
from hooteproto.v1 import error_pb2


class Client(Calls):
    """The asyncio flavour of `hooteproto.Client`: the same methods, as coroutines."""

    def __init__(self, endpoint: str, *, key: bytes | str | None = None, key_file: str | os.PathLike | None = None,
                 timeout: float = 10.0, attempt_timeout: float = 1.0, name: str = "py-aio"):
        self.endpoint = endpoint
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._framer = Framer(load_key(key, key_file), name)
        self._context = zmq.asyncio.Context.instance()
        self._pending: dict[str, asyncio.Future] = {}
        self._socket = None
        self._monitor = None
        self._tasks = []

    def _connect(self):
        self._close_socket()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._socket.connect(self.endpoint)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read(self._socket)), loop.create_task(self._watch(self._monitor))]

    def _close_socket(self):
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._socket is not None:
            # Stop the monitor first: libzmq sends its events blocking.
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._socket.close(linger=0)
            self._socket = self._monitor = None

    async def _read(self, socket):
        while True:
            reply = self._framer.decode(await socket.recv_multipart())
            if reply is not None and (future := self._pending.get(reply.id)) and not future.done():
                future.set_result(reply)

    async def _watch(self, monitor):
        while True:
            await monitor.recv_multipart()  # the connection dropped: nothing in flight will be answered
            for future in self._pending.values():
                if not future.done():
                    future.set_result(LOST)

    async def call(self, case: str, message, *, timeout: float | None = None, attempt_timeout: float | None = None,
                   idempotent: bool | None = None, traceparent: str = ""):
        """Sends request `case` and returns its typed reply."""
        if self._socket is None:
            self._connect()
        loop = asyncio.get_running_loop()
        timeout = self.timeout if timeout is None else timeout
        attempt = self.attempt_timeout if attempt_timeout is None else attempt_timeout
        retry = is_idempotent(message) if idempotent is None else idempotent
        envelope_id = self._framer.next_id()
        future = loop.create_future()
        self._pending[envelope_id] = future
        deadline = loop.time() + timeout
        backoff = 0.05
        try:
            while (remaining := deadline - loop.time()) > 0:
                frames = self._framer.frames(envelope_id, case, message, int(remaining * 1000), traceparent)
                await self._socket.send_multipart(frames)
                wait = remaining if not retry else min(remaining, attempt)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), wait)
                    if reply is LOST:
                        if not retry:
                            raise connection_lost(self.endpoint, case)
                        await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                        backoff = min(backoff * 2, 1.0)
                        future = self._pending[envelope_id] = loop.create_future()
                        continue
                    return unwrap(reply, case)
                except asyncio.TimeoutError:
                    if not retry:
                        break
                    self._connect()
        finally:
            self._pending.pop(envelope_id, None)
        raise HootError(error_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
                        f"no reply to {case} from {self.endpoint} within {timeout:.1f} s")

    async def close(self):
        self._close_socket()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        await self.close()
