"""The synchronous client: one DEALER, Lazy-Pirate retries for idempotent requests
(PROTOCOL.md §3: a retry keeps its id), and a fresh socket after a timed-out attempt, so a
restarted server is reached again. A monitor socket reports a dropped connection, so a request
in flight stops waiting at once: resent if idempotent, else UNAVAILABLE (PROTOCOL.md §9)."""

from __future__ import annotations

import os
import time

import zmq

from hooteproto._calls import Calls
from hooteproto._core import LOST, Framer, connection_lost, is_idempotent, load_key, unwrap
from hooteproto.errors import HootError
from hooteproto.v1 import error_pb2


class Client(Calls):
    """A HOOT/1 client for one service endpoint.

    - `timeout`: seconds for a whole request (retries included), sent as `timeout_ms`.
    - `attempt_timeout`: seconds one attempt of an idempotent request waits before resending.
    - `key` / `key_file`: the shared HMAC key, or a file holding it (default: the file
      $HOOT_KEY_FILE, else $HOOT_KEY, else <data dir>/hoot.key if it exists, the data dir being
      $HOOT_DATA_DIR or ~/.local/share/hootenanny; none: unsigned). With a key, unsigned
      replies are dropped.
    """

    def __init__(self, endpoint: str, *, key: bytes | str | None = None, key_file: str | os.PathLike | None = None,
                 timeout: float = 10.0, attempt_timeout: float = 1.0, name: str = "py"):
        self.endpoint = endpoint
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._framer = Framer(load_key(key, key_file), name)
        self._context = zmq.Context.instance()
        self._socket = None
        self._monitor = None
        self._connect()

    def _connect(self):
        self._close_socket()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        self._socket.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._socket.connect(self.endpoint)

    def _close_socket(self):
        if self._socket is not None:
            # Stop the monitor first: libzmq sends its events blocking.
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._socket.close(linger=0)
            self._socket = self._monitor = None

    def _forget_old_disconnects(self):
        while self._monitor.poll(0):
            self._monitor.recv_multipart()

    def call(self, case: str, message, *, timeout: float | None = None, attempt_timeout: float | None = None,
             idempotent: bool | None = None, traceparent: str = ""):
        """Sends request `case` (e.g. "lua_eval") and returns its typed reply."""
        timeout = self.timeout if timeout is None else timeout
        attempt = self.attempt_timeout if attempt_timeout is None else attempt_timeout
        retry = is_idempotent(message) if idempotent is None else idempotent
        envelope_id = self._framer.next_id()
        deadline = time.monotonic() + timeout
        backoff = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            frames = self._framer.frames(envelope_id, case, message, int(remaining * 1000), traceparent)
            self._forget_old_disconnects()
            self._socket.send_multipart(frames)
            wait_until = deadline if not retry else min(deadline, time.monotonic() + attempt)
            reply = self._receive(envelope_id, wait_until)
            if reply is LOST:
                if not retry:
                    raise connection_lost(self.endpoint, case)
                time.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, 1.0)
                continue
            if reply is not None:
                return unwrap(reply, case)
            if not retry:
                break
            self._connect()  # Lazy Pirate: a fresh socket reaches a restarted server
        raise HootError(error_pb2.ERROR_CODE_DEADLINE_EXCEEDED,
                        f"no reply to {case} from {self.endpoint} within {timeout:.1f} s")

    def _receive(self, envelope_id: str, until: float):
        """The reply, LOST if the connection dropped first, or None at `until`."""
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while (remaining := until - time.monotonic()) > 0:
            ready = dict(poller.poll(max(1, int(remaining * 1000))))
            if self._socket in ready:
                reply = self._framer.decode(self._socket.recv_multipart())
                if reply is not None and reply.id == envelope_id:
                    return reply
            elif self._monitor in ready:
                self._monitor.recv_multipart()
                return LOST
        return None

    def close(self):
        self._close_socket()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()
