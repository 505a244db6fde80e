"""Typed helpers for the common calls, shared by both clients: each builds the request and
hands it to `self.call(case, message)`, which returns the typed reply (the sync client) or an
awaitable of it (the asyncio client)."""

from __future__ import annotations

from hooteproto._core import struct
from hooteproto.v1 import (
    artifact_pb2,
    cas_pb2,
    job_pb2,
    lua_pb2,
    script_pb2,
    timeline_event_pb2,
    timeline_pb2,
    transport_pb2,
    worker_pb2,
)


class Calls:
    def call(self, case: str, message, **options):  # pragma: no cover - provided by the client
        raise NotImplementedError

    # workers
    def ping(self, **options):
        return self.call("ping", worker_pb2.PingRequest(), **options)

    # Lua
    def lua_eval(self, code: str, params: dict | None = None, **options):
        return self.call("lua_eval", lua_pb2.LuaEvalRequest(code=code, params=struct(params)), **options)

    def script_store(self, content: str, tags=(), creator: str = "", name: str = "", **options):
        """Stores a script; with `name`, as that name's newest version."""
        request = script_pb2.ScriptStoreRequest(content=content, tags=list(tags), creator=creator, name=name)
        return self.call("script_store", request, **options)

    # jobs
    def job_execute(
        self,
        script_hash: str,
        params: dict | None = None,
        tags=(),
        priority: int = job_pb2.JOB_PRIORITY_UNSPECIFIED,
        **options,
    ):
        """Starts a job. `script_hash` may also be a script name (its newest version) or
        `name@<hash prefix>`; `priority` is a `job_pb2.JOB_PRIORITY_*` value."""
        request = job_pb2.JobExecuteRequest(
            script_hash=script_hash, params=struct(params), tags=list(tags), priority=priority
        )
        return self.call("job_execute", request, **options)

    def job_status(self, job_id: str, **options):
        return self.call("job_status", job_pb2.JobStatusRequest(job_id=job_id), **options)

    def job_poll(self, job_ids, timeout_ms: int = 10_000, all: bool = False, **options):
        mode = job_pb2.POLL_MODE_ALL if all else job_pb2.POLL_MODE_ANY
        request = job_pb2.JobPollRequest(job_ids=list(job_ids), timeout_ms=timeout_ms, mode=mode)
        options.setdefault("timeout", timeout_ms / 1000 + 5)
        options.setdefault("attempt_timeout", timeout_ms / 1000 + 2)
        return self.call("job_poll", request, **options)

    def job_cancel(self, job_id: str, **options):
        return self.call("job_cancel", job_pb2.JobCancelRequest(job_id=job_id), **options)

    # CAS
    def cas_store(self, data: bytes, mime_type: str = "application/octet-stream", **options):
        return self.call("cas_store", cas_pb2.CasStoreRequest(data=data, mime_type=mime_type), **options)

    def cas_get(self, hash: str, offset: int = 0, length: int = 0, **options):
        return self.call("cas_get", cas_pb2.CasGetRequest(hash=hash, offset=offset, length=length), **options)

    def cas_inspect(self, hash: str, **options):
        return self.call("cas_inspect", cas_pb2.CasInspectRequest(hash=hash), **options)

    # artifacts
    def artifact_create(self, cas_hash: str, name: str, tags=(), creator: str = "", metadata=None, parent_ids=(), **options):
        request = artifact_pb2.ArtifactCreateRequest(
            cas_hash=cas_hash, name=name, tags=list(tags), creator=creator, metadata=struct(metadata), parent_ids=list(parent_ids)
        )
        return self.call("artifact_create", request, **options)

    def artifact_get(self, artifact_id: str, **options):
        return self.call("artifact_get", artifact_pb2.ArtifactGetRequest(artifact_id=artifact_id), **options)

    def artifact_list(self, tag: str = "", creator: str = "", page_size: int = 0, page_token: str = "", **options):
        request = artifact_pb2.ArtifactListRequest(tag=tag, creator=creator, page_size=page_size, page_token=page_token)
        return self.call("artifact_list", request, **options)

    # transport and timeline
    def transport_play(self, **options):
        return self.call("transport_play", transport_pb2.TransportPlayRequest(), **options)

    def transport_stop(self, **options):
        return self.call("transport_stop", transport_pb2.TransportStopRequest(), **options)

    def transport_seek(self, position_beats: float, **options):
        return self.call("transport_seek", transport_pb2.TransportSeekRequest(position_beats=position_beats), **options)

    def transport_status(self, **options):
        return self.call("transport_status", transport_pb2.TransportStatusRequest(), **options)

    def timeline_query(self, from_beats: float = 0.0, to_beats: float = 0.0, **options):
        return self.call("timeline_query", timeline_pb2.TimelineQueryRequest(from_beats=from_beats, to_beats=to_beats), **options)

    def timeline_add_marker(self, event_type: int, position_beats: float, metadata: dict | None = None, **options):
        request = timeline_pb2.TimelineAddMarkerRequest(
            event_type=event_type, position_beats=position_beats, metadata=struct(metadata)
        )
        return self.call("timeline_add_marker", request, **options)


# Marker kinds, for timeline_add_marker.
SECTION_CHANGE = timeline_event_pb2.TIMELINE_EVENT_TYPE_SECTION_CHANGE
BEAT_MARKER = timeline_event_pb2.TIMELINE_EVENT_TYPE_BEAT_MARKER
CUE_POINT = timeline_event_pb2.TIMELINE_EVENT_TYPE_CUE_POINT
GENERATE_TRANSITION = timeline_event_pb2.TIMELINE_EVENT_TYPE_GENERATE_TRANSITION
