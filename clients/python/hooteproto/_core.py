"""What the sync and asyncio clients share: building and checking HOOT/1 frames."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from pathlib import Path

from google.protobuf import json_format, struct_pb2

from hooteproto.errors import HootError, from_reply
from hooteproto.v1 import envelope_pb2, error_pb2, options_pb2

PROTOCOL = b"HOOT/1"
MAX_MESSAGE_SIZE = 64 << 20

# What an attempt gets when its connection dropped before the reply came (PROTOCOL.md §9).
LOST = object()


def connection_lost(endpoint: str, case: str) -> HootError:
    """The error for a request that may not be resent and lost its connection in flight."""
    return HootError(
        error_pb2.ERROR_CODE_UNAVAILABLE,
        f"the connection to {endpoint} was lost with {case} in flight; it may or may not have been done",
    )


KEY_FILE_NAME = "hoot.key"


def data_dir() -> Path:
    """The data directory, as every Hootenanny program finds it: $HOOT_DATA_DIR, else
    $XDG_DATA_HOME/hootenanny, else ~/.local/share/hootenanny."""
    if os.environ.get("HOOT_DATA_DIR"):
        return Path(os.environ["HOOT_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "hootenanny"


def _read_key_file(path) -> bytes:
    with open(path, "rb") as f:
        return f.read().rstrip()  # trailing whitespace (a final newline) is not part of the key


def load_key(key: bytes | str | None = None, key_file: str | os.PathLike | None = None) -> bytes | None:
    """The shared key, found as every Hootenanny program finds it: `key`, else the file
    `key_file`, else the file $HOOT_KEY_FILE, else $HOOT_KEY, else <data dir>/hoot.key if it
    exists (the key `holler up` creates); none means unsigned."""
    if key is not None:
        key = key.encode() if isinstance(key, str) else key
    elif key_file is not None:
        key = _read_key_file(key_file)
    elif os.environ.get("HOOT_KEY_FILE"):
        key = _read_key_file(os.environ["HOOT_KEY_FILE"])
    elif os.environ.get("HOOT_KEY"):
        key = os.environ["HOOT_KEY"].encode()
    elif (data_dir() / KEY_FILE_NAME).exists():
        key = _read_key_file(data_dir() / KEY_FILE_NAME)
    if key is not None and len(key) < 16:
        raise ValueError("a HOOT/1 key must be at least 16 bytes (PROTOCOL.md §5)")
    return key


def is_idempotent(message) -> bool:
    """Whether the schema marks the request safe to resend: `(hooteproto.v1.idempotent)`."""
    return message.DESCRIPTOR.GetOptions().Extensions[options_pb2.idempotent]


def struct(value: dict | None) -> struct_pb2.Struct | None:
    """A dict as `google.protobuf.Struct`."""
    if value is None:
        return None
    result = struct_pb2.Struct()
    result.update(value)
    return result


def to_python(value: struct_pb2.Value | struct_pb2.Struct):
    """A `Value` or `Struct` as plain Python."""
    return json_format.MessageToDict(value)


class Framer:
    """Envelope ids, signing, size checks and reply decoding for one client instance."""

    def __init__(self, key: bytes | None, name: str):
        self.key = key
        self.prefix = f"{name}-{uuid.uuid4().hex[:12]}"
        self.counter = 0

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.prefix}-{self.counter}"

    def sign(self, body: bytes) -> bytes:
        return hmac.new(self.key, body, hashlib.sha256).digest() if self.key else b""

    def frames(self, envelope_id: str, case: str, message, timeout_ms: int, traceparent: str) -> list[bytes]:
        envelope = envelope_pb2.Envelope(id=envelope_id, timeout_ms=timeout_ms, traceparent=traceparent)
        getattr(envelope, case).CopyFrom(message)
        body = envelope.SerializeToString(deterministic=True)
        if len(body) > MAX_MESSAGE_SIZE:
            raise HootError(
                error_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
                f"the request is {len(body)} bytes; the limit is {MAX_MESSAGE_SIZE} (put bulk data in the CAS)",
            )
        return [PROTOCOL, self.sign(body), body]

    def decode(self, frames: list[bytes]):
        """The reply envelope, or None for frames to drop (§5, §7)."""
        if len(frames) != 3 or frames[0] != PROTOCOL:
            return None
        if self.key and not hmac.compare_digest(frames[1], self.sign(frames[2])):
            return None
        try:
            return envelope_pb2.Envelope.FromString(frames[2])
        except Exception:  # a malformed reply is dropped, never raised into the caller
            return None


def unwrap(reply, case: str):
    """The typed reply for request case `case`, or raise the peer's error."""
    which = reply.WhichOneof("payload")
    if which == "error":
        raise from_reply(reply.error)
    if which != f"{case}_reply" and which != "success":
        raise HootError(error_pb2.ERROR_CODE_INTERNAL, f"{case} was answered with {which}")
    return getattr(reply, which)
