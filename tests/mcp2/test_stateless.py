"""The MCP Python SDK 2.x against `holler up`: it negotiates the stateless 2026-07-28
revision (no session), lists the three backends' tools and calls one."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mcp"))

from conftest import Stack  # noqa: E402  (the shared `holler up` launcher)
from mcp.client.client import Client  # noqa: E402


def test_the_stateless_revision_works(tmp_path):
    stack = Stack(tmp_path)
    try:
        async def body():
            async with Client(stack.url) as client:
                version = client.protocol_version
                tools = await client.list_tools()
                result = await client.call_tool("lua_eval", {"code": "return 20 + 22"})
                return version, {t.name for t in tools.tools}, result

        version, names, result = asyncio.run(body())
        assert {"lua_eval", "cas_store", "transport_play"} <= names
        assert not result.is_error
        assert result.structured_content["result"] == 42
        assert version == "2026-07-28", version
    finally:
        assert stack.stop() == 0
