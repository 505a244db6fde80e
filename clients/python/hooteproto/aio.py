"""The asyncio client: one DEALER shared by any number of concurrent requests; a reader task
hands each reply to the request with its id. Idempotent requests are resent (same id) after
each attempt timeout, on a fresh socket, so a restarted server is reached again."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from hooteproto._calls import Calls
from hooteproto._core import Framer, is_idempotent, load_key, unwrap
from hooteproto.errors import HootError
from hooteproto.v1 import error_pb2


class Client(Calls):
    """The asyncio flavour of `hooteproto.Client`: the same methods, as coroutines."""

    def __init__(self, endpoint: str, *, key: bytes | str | None = None, timeout: float = 10.0,
                 attempt_timeout: float = 1.0, name: str = "py-aio"):
        self.endpoint = endpoint
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._framer = Framer(load_key(key), name)
        self._context = zmq.asyncio.Context.instance()
        self._pending: dict[str, asyncio.Future] = {}
        self._socket = None
        self._reader = None

    def _connect(self):
        if self._reader is not None:
            self._reader.cancel()
        if self._socket is not None:
            self._socket.close(linger=0)
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        self._socket.connect(self.endpoint)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._socket))

    async def _read(self, socket):
        while True:
            reply = self._framer.decode(await socket.recv_multipart())
            if reply is not None and (future := self._pending.get(reply.id)) and not future.done():
                future.set_result(reply)

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
        try:
            while (remaining := deadline - loop.time()) > 0:
                frames = self._framer.frames(envelope_id, case, message, int(remaining * 1000), traceparent)
                await self._socket.send_multipart(frames)
                wait = remaining if not retry else min(remaining, attempt)
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), wait)
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
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        await self.close()
