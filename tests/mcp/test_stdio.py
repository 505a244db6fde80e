"""`holler mcp`: MCP over stdio, as desktop hosts launch servers, driven by the official MCP
Python SDK's stdio client. Both ways a host configures it: `holler mcp --up` (the stack started
inside that process) and `holler mcp` in front of a stack that is already running."""

import base64
import json
import math
import os
import socket
import struct
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import HOLLER, Stack, free_port

EXPECTED_TOOLS = {"lua_eval", "job_execute", "cas_get", "artifact_create", "timeline_add_region", "timeline_render"}


def up_args(tmp: Path) -> tuple[list[str], dict]:
    """`holler mcp --up` on free ports in a temporary data directory, with the built-in SoundFont."""
    endpoints = {name: f"tcp://127.0.0.1:{free_port()}" for name in ("luanette", "hootenanny", "chaosgarden")}
    args = [
        "--luanette", endpoints["luanette"],
        "--hootenanny", endpoints["hootenanny"],
        "--chaosgarden", endpoints["chaosgarden"],
        "--data-dir", str(tmp / "data"),
        "mcp", "--up",
        "--audio-device", "none",
        "--soundfont", "builtin",
        "--broadcasts", f"tcp://127.0.0.1:{free_port()}",
        "--no-health",
    ]
    return args, endpoints


def host_env() -> dict:
    """A host's environment: nothing that names a key, so holler finds or creates its own."""
    return {k: v for k, v in os.environ.items() if k not in ("HOOT_KEY", "HOOT_KEY_FILE")}


def peak_dbfs(wav: bytes) -> float:
    """The peak of a 32-bit float WAV, in dB below full scale."""
    pos = 12
    while pos + 8 <= len(wav):
        tag, size = wav[pos : pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        if tag == b"data":
            body = wav[pos + 8 : pos + 8 + size]
            peak = max(abs(s) for s in struct.unpack(f"<{len(body) // 4}f", body))
            return 20 * math.log10(peak) if peak > 0 else float("-inf")
        pos += 8 + size + (size & 1)
    raise AssertionError("the render has no data chunk")


async def call(session: ClientSession, tool: str, arguments: dict) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, f"{tool}: {result.content}"
    return result.structuredContent


def test_mcp_up_serves_tools_and_makes_midi_audible_over_stdio(tmp_path):
    args, _ = up_args(tmp_path)
    params = StdioServerParameters(command=str(HOLLER), args=args, env=host_env())

    async def session_run():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    info = await session.initialize()
                    assert info.serverInfo.name == "holler"
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    assert EXPECTED_TOOLS <= tools, f"missing: {EXPECTED_TOOLS - tools}"

                    evaluated = await call(session, "lua_eval", {"code": "return 6 * 7"})
                    assert evaluated["result"] == 42

                    # A MIDI region, rendered offline through the built-in SoundFont, is heard.
                    song = (await call(session, "lua_eval", {
                        "code": "return midi.save(midi.from_notes({{pitch = 60, start = 0, duration = 1},"
                                " {pitch = 67, start = 0.5, duration = 1}}))",
                    }))["result"]
                    await call(session, "timeline_add_region", {"casHash": song, "positionBeats": 0})
                    render = await call(session, "timeline_render", {"fromBeats": 0, "toBeats": 2})
                    assert int(render["frames"]) > 0
                    wav = base64.b64decode((await call(session, "cas_get", {"hash": render["cas_hash"]}))["data"])
                    return peak_dbfs(wav)

    peak = anyio.run(session_run)
    assert peak > -40, f"the MIDI region rendered silent (peak {peak:.1f} dBFS)"


def test_mcp_up_stops_the_stack_when_the_host_closes_stdin(tmp_path):
    """Hosts stop a stdio server by closing its stdin: the stack drains and the process exits
    0, freeing its ports; stdout carried nothing but JSON-RPC."""
    args, endpoints = up_args(tmp_path)
    process = subprocess.Popen(
        [str(HOLLER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=open(tmp_path / "stderr.log", "w"), env=host_env(),
    )
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw-host", "version": "0"}},
    }
    process.stdin.write((json.dumps(initialize) + "\n").encode())
    process.stdin.flush()
    reply = json.loads(process.stdout.readline())
    assert reply["id"] == 1 and reply["result"]["serverInfo"]["name"] == "holler"
    process.stdin.close()
    assert process.wait(timeout=60) == 0, (tmp_path / "stderr.log").read_text()
    rest = process.stdout.read().decode()
    for line in rest.splitlines():
        json.loads(line)  # anything else on stdout would corrupt the host's stream
    port = int(endpoints["luanette"].rsplit(":", 1)[1])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # the stack let go of its ports


def test_mcp_forwards_to_a_running_stack_with_the_key_it_finds(tmp_path):
    stack = Stack(tmp_path)
    try:
        args = [
            "--luanette", stack.endpoints["luanette"],
            "--hootenanny", stack.endpoints["hootenanny"],
            "--chaosgarden", stack.endpoints["chaosgarden"],
            "--data-dir", str(stack.data),
            "mcp", "--broadcasts", "none",
        ]
        params = StdioServerParameters(command=str(HOLLER), args=args, env=host_env())

        async def session_run():
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    assert EXPECTED_TOOLS <= tools
                    return await call(session, "lua_eval", {"code": "return 'signed ' .. 1 + 1"})

        evaluated = anyio.run(session_run)
        assert evaluated["result"] == "signed 2"
    finally:
        stack.stop()


def test_mcp_refuses_service_flags_without_up(tmp_path):
    out = subprocess.run(
        [str(HOLLER), "--data-dir", str(tmp_path), "mcp", "--audio-device", "none"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    assert "add --up" in out.stderr
