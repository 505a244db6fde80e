"""The client against the real services (`holler up`, built from the workspace): typed
calls, typed errors, concurrency on the asyncio flavour, and a restart of the whole stack in
the middle of a request that the client rides out by resending it."""

import asyncio
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "mcp"))
from conftest import Stack  # noqa: E402  (starts target/debug/holler up on free ports)

import hooteproto  # noqa: E402
from hooteproto import HootError, aio  # noqa: E402
from hooteproto.v1 import error_pb2, job_pb2, transport_pb2  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("clients-python"))
    with pytest.MonkeyPatch.context() as env:
        # As a user on the stack's host: clients find <data dir>/hoot.key, the key `holler up`
        # created, by themselves.
        env.setenv("HOOT_DATA_DIR", str(s.data))
        env.delenv("HOOT_KEY", raising=False)
        env.delenv("HOOT_KEY_FILE", raising=False)
        yield s
    s.stop()


def test_holler_up_requires_its_key_and_clients_find_it(stack):
    key_file = stack.data / "hoot.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and stack.data.stat().st_mode & 0o777 == 0o700
    assert hooteproto._core.load_key() == key_file.read_bytes().rstrip()
    with hooteproto.Client(stack.endpoints["luanette"]) as lua:
        assert lua.lua_eval("return 6 * 7").result.number_value == 42
    with hooteproto.Client(stack.endpoints["luanette"], key_file=str(key_file)) as lua:
        assert lua.ping().service == "luanette"
    forged = hooteproto.Client(stack.endpoints["luanette"], key=b"not the key this stack holds", timeout=0.7,
                               attempt_timeout=0.3)
    with forged, pytest.raises(HootError) as error:
        forged.lua_eval("return 1")  # dropped, never answered (PROTOCOL.md §5)
    assert error.value.code_name == "DEADLINE_EXCEEDED"


def test_typed_calls_against_every_service(stack):
    lua = hooteproto.Client(stack.endpoints["luanette"])
    hoot = hooteproto.Client(stack.endpoints["hootenanny"])
    garden = hooteproto.Client(stack.endpoints["chaosgarden"])
    try:
        assert lua.ping().service == "luanette"
        assert hoot.ping().service == "hootenanny"
        reply = lua.lua_eval("return {n = params.n * 2}", params={"n": 21})
        assert hooteproto.to_python(reply.result) == {"n": 42}
        stored = hoot.cas_store(b"hello, client", "text/plain")
        assert len(stored.hash) == 64
        assert hoot.cas_get(stored.hash[:10]).data == b"hello, client"
        assert hoot.cas_inspect(stored.hash).object.size == len(b"hello, client")
        artifact = hoot.artifact_create(stored.hash, "greeting", tags=["py"]).artifact
        assert hoot.artifact_get(artifact.artifact_id).artifact.name == "greeting"
        script = lua.script_store("function main(p) return p.a + p.b end", tags=["py"]).script.script_hash
        job = lua.job_execute(script, {"a": 2, "b": 3}).job_id
        done = lua.job_poll([job], timeout_ms=5000).completed[0]
        assert done.state == job_pb2.JOB_STATE_SUCCEEDED and done.result.number_value == 5
        named = lua.script_store("function main(p) return 7 end", name="py-seven").script
        assert (named.name, named.version) == ("py-seven", 1)
        by_name = lua.job_execute("py-seven", priority=job_pb2.JOB_PRIORITY_HIGH).job_id
        ran = lua.job_poll([by_name], timeout_ms=5000).completed[0]
        assert (ran.script_hash, ran.script_name) == (named.script_hash, "py-seven")
        assert ran.priority == job_pb2.JOB_PRIORITY_HIGH and ran.result.number_value == 7
        marker = garden.timeline_add_marker(hooteproto.CUE_POINT, 4.0, {"name": "drop"}).marker
        assert marker.marker_id in [m.marker_id for m in garden.timeline_query().markers]
        assert garden.transport_play().state.playback == transport_pb2.PLAYBACK_STATE_PLAYING
        assert garden.transport_stop().state.playback == transport_pb2.PLAYBACK_STATE_STOPPED
    finally:
        for client in (lua, hoot, garden):
            client.close()


def test_errors_carry_the_canonical_code(stack):
    with hooteproto.Client(stack.endpoints["luanette"]) as lua:
        with pytest.raises(HootError) as error:
            lua.lua_eval("error('boom')")
        assert error.value.code == error_pb2.ERROR_CODE_INVALID_ARGUMENT
        assert "boom" in error.value.message and error.value.details.get("kind") == "runtime"
        with pytest.raises(HootError) as error:
            lua.job_status("no-such-job")
        assert error.value.code_name == "NOT_FOUND"
    with hooteproto.Client(stack.endpoints["hootenanny"]) as hoot:
        with pytest.raises(HootError) as error:
            hoot.transport_play()
        assert error.value.code_name == "UNIMPLEMENTED"


def test_the_asyncio_client_runs_requests_concurrently(stack):
    async def body():
        async with aio.Client(stack.endpoints["luanette"]) as lua:
            replies = await asyncio.gather(*(lua.lua_eval(f"return {i} * 2") for i in range(50)))
            return [r.result.number_value for r in replies]

    assert asyncio.run(body()) == [i * 2.0 for i in range(50)]


def test_a_restart_in_the_middle_is_ridden_out(stack, tmp_path):
    lua = hooteproto.Client(stack.endpoints["luanette"], timeout=30)
    assert lua.ping().service == "luanette"
    stack.stop()

    def restart():
        time.sleep(1.5)
        stack.__init__(stack.data.parent, endpoints=stack.endpoints, port=stack.port)

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        # Sent while nothing listens; ping is idempotent, so the client resends (same id)
        # on a fresh socket until the restarted service answers.
        started = time.monotonic()
        assert lua.ping().service == "luanette"
        assert time.monotonic() - started >= 1.0
        assert hooteproto.to_python(lua.lua_eval("return 'back'").result) == "back"
    finally:
        thread.join()
        lua.close()


def _stop_every_thread(pid: int):
    """SIGSTOP, then wait until no thread of the process can still answer."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(") ", 1)[1][:1])
        if all(s == "T" for s in states):
            return
        time.sleep(0.001)
    raise AssertionError("the stack never stopped")


def test_requests_lost_with_a_killed_server_fail_fast_or_are_resent(stack):
    async def body():
        async with aio.Client(stack.endpoints["luanette"], timeout=30) as lua:
            assert (await lua.ping()).service == "luanette"
            _stop_every_thread(stack.process.pid)
            ping = asyncio.ensure_future(lua.ping())  # idempotent: resent after the restart
            evaluated = asyncio.ensure_future(lua.lua_eval("return 1"))  # may not be resent
            await asyncio.sleep(0.3)
            killed = time.monotonic()
            stack.process.kill()
            stack.process.wait()
            stack.log.close()
            with pytest.raises(HootError) as error:
                await evaluated
            assert error.value.code_name == "UNAVAILABLE" and "may or may not" in error.value.message
            assert time.monotonic() - killed < 2, "the eval stopped waiting when the connection dropped"
            await asyncio.to_thread(stack.__init__, stack.data.parent, endpoints=stack.endpoints, port=stack.port)
            assert (await ping).service == "luanette"

    asyncio.run(body())

    # The sync client hears it too.
    lua = hooteproto.Client(stack.endpoints["luanette"], timeout=30)
    try:
        assert lua.ping().service == "luanette"
        _stop_every_thread(stack.process.pid)
        threading.Timer(0.3, stack.process.kill).start()
        started = time.monotonic()
        with pytest.raises(HootError) as error:
            lua.lua_eval("return 1")
        assert error.value.code_name == "UNAVAILABLE"
        assert time.monotonic() - started < 2.5
        stack.process.wait()
        stack.log.close()
        stack.__init__(stack.data.parent, endpoints=stack.endpoints, port=stack.port)
        assert hooteproto.to_python(lua.lua_eval("return 'back'").result) == "back"
    finally:
        lua.close()
