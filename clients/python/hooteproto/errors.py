"""Errors with the canonical HOOT/1 codes (schema/PROTOCOL.md §4)."""

from __future__ import annotations


class HootError(Exception):
    """The peer answered with an `Error`, or the request failed locally (timeout, size).

    `code` is a `hooteproto.v1.error_pb2.ErrorCode` value; `code_name` its name without the
    `ERROR_CODE_` prefix; `details` the error's structured detail as a dict.
    """

    def __init__(self, code: int, message: str, details: dict | None = None):
        from hooteproto.v1 import error_pb2

        try:
            name = error_pb2.ErrorCode.Name(code)
        except ValueError:  # a code this client does not know counts as UNKNOWN (§4)
            code, name = error_pb2.ERROR_CODE_UNKNOWN, "ERROR_CODE_UNKNOWN"
        self.code = code
        self.code_name = name.removeprefix("ERROR_CODE_")
        self.message = message
        self.details = details or {}
        super().__init__(f"{self.code_name}: {message}")


def from_reply(error) -> HootError:
    """A HootError from an `Error` message."""
    from google.protobuf import json_format

    details = json_format.MessageToDict(error.details) if error.HasField("details") else {}
    return HootError(error.code, error.message, details)
