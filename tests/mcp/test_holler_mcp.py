"""The official MCP Python SDK against `holler up`: what an agent does first."""

import asyncio
import json
import os
import urllib.error
import urllib.request

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from conftest import Stack, declared_tools

INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}).encode()


def run(coro):
    return asyncio.run(coro)


async def with_session(url, body, headers=None):
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)


def text_of(result):
    return "".join(block.text for block in result.content if block.type == "text")


def test_tools_from_all_three_backends(stack):
    async def body(session):
        tools = await session.list_tools()
        return {t.name: t for t in tools.tools}

    tools = run(with_session(stack.url, body))
    assert set(tools) == set(declared_tools()), sorted(tools)
    assert tools["lua_eval"].inputSchema["properties"]["code"]["type"] == "string"


def properties_of(schema, path=""):
    """Every property anywhere in a JSON Schema, as (path, property)."""
    for name, prop in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from properties_of(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from properties_of(schema["items"], f"{path}[]")


def test_every_tool_has_a_contract_an_agent_can_use(stack):
    """What the official SDK sees: descriptions on the input properties, `required` as the
    schema says, short enum names and no UNSPECIFIED, annotations and an outputSchema."""
    async def body(session):
        return (await session.list_tools()).tools

    tools = run(with_session(stack.url, body))
    described = total = 0
    for tool in tools:
        assert tool.description, tool.name
        assert tool.outputSchema and tool.outputSchema["type"] == "object", tool.name
        assert tool.annotations is not None, tool.name
        for hint in ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"):
            assert isinstance(getattr(tool.annotations, hint), bool), (tool.name, hint)
        assert not (tool.annotations.readOnlyHint and tool.annotations.destructiveHint), tool.name
        for side in (tool.inputSchema, tool.outputSchema):
            assert "UNSPECIFIED" not in json.dumps(side), tool.name
        for path, prop in properties_of(tool.inputSchema, tool.name):
            total += 1
            described += bool(prop.get("description"))
        for name in tool.inputSchema.get("required", []):
            assert name in tool.inputSchema["properties"], (tool.name, name)
    assert total > 50 and described / total >= 0.95, f"{described} of {total} input properties described"
    by_name = {t.name: t for t in tools}
    assert by_name["transport_seek"].inputSchema["required"] == ["position_beats"]
    assert by_name["lua_eval"].inputSchema["required"] == ["code"]
    assert by_name["timeline_add_marker"].inputSchema["properties"]["event_type"]["enum"] == [
        "section_change", "beat_marker", "cue_point", "generate_transition"]
    assert "required" not in by_name["transport_status"].inputSchema
    assert by_name["transport_status"].annotations.readOnlyHint
    assert by_name["timeline_remove"].annotations.destructiveHint
    assert by_name["cas_store"].annotations.idempotentHint and not by_name["cas_store"].annotations.readOnlyHint
    assert by_name["job_execute"].annotations.openWorldHint


def test_wrong_arguments_are_answered_with_what_is_valid(stack):
    async def body(session):
        wrong = await session.call_tool("transport_seek", {"beats": 4})
        short = await session.call_tool("timeline_add_marker", {"event_type": "cue_point", "position_beats": 3})
        full = await session.call_tool(
            "timeline_add_marker", {"event_type": "TIMELINE_EVENT_TYPE_BEAT_MARKER", "position_beats": 5})
        return wrong, short, full

    wrong, short, full = run(with_session(stack.url, body))
    assert wrong.isError
    text = text_of(wrong)
    assert text.startswith("INVALID_ARGUMENT: ") and text.count("INVALID_ARGUMENT") == 1, text
    assert "`beats`" in text and "valid fields: position_beats" in text, text
    assert short.structuredContent["marker"]["event_type"] == "cue_point"
    assert full.structuredContent["marker"]["event_type"] == "beat_marker"


def test_lua_eval_cas_and_transport_through_the_gateway(stack):
    async def body(session):
        lua = await session.call_tool("lua_eval", {"code": "print('hello') return 6 * 7"})
        stored = await session.call_tool("cas_store", {"data": "aGVsbG8=", "mime_type": "text/plain"})
        digest = json.loads(text_of(stored))["hash"]
        inspected = await session.call_tool("cas_inspect", {"hash": digest})
        played = await session.call_tool("transport_play", {})
        status = await session.call_tool("transport_status", {})
        await session.call_tool("transport_stop", {})
        bad = await session.call_tool("lua_eval", {"code": "error('boom')"})
        return lua, digest, inspected, played, status, bad

    lua, digest, inspected, played, status, bad = run(with_session(stack.url, body))
    assert not lua.isError
    assert json.loads(text_of(lua))["result"] == 42
    assert len(digest) == 64
    assert json.loads(text_of(inspected))["object"]["size"] in ("5", 5)
    assert json.loads(text_of(played))["state"]["playback"] == "playing"
    assert json.loads(text_of(status))["state"]["backend"] == "null"
    assert bad.isError and "boom" in text_of(bad) and text_of(bad).count("INVALID_ARGUMENT") == 1, text_of(bad)


def test_a_stored_script_runs_as_a_job(stack):
    async def body(session):
        stored = await session.call_tool("script_store", {
            "content": "function main(p) job.progress(0.5, 'half') return {twice = p.n * 2} end",
            "tags": ["mcp-test"],
        })
        script = json.loads(text_of(stored))["script"]["script_hash"]
        started = await session.call_tool("job_execute", {"script_hash": script, "params": {"n": 21}})
        job_id = json.loads(text_of(started))["job_id"]
        polled = await session.call_tool("job_poll", {"job_ids": [job_id], "timeout_ms": 10000})
        return json.loads(text_of(polled))

    polled = run(with_session(stack.url, body))
    job = polled["completed"][0]
    assert job["state"] == "succeeded"
    assert job["result"] == {"twice": 42}


def test_an_unknown_tool_is_a_clear_error(stack):
    async def body(session):
        try:
            result = await session.call_tool("nope_unknown", {})
        except Exception as error:  # the SDK raises McpError for protocol errors
            return str(error)
        return text_of(result)

    message = run(with_session(stack.url, body))
    assert "unknown tool" in message and "nope_unknown" in message


def test_a_foreign_origin_is_refused(stack):
    request = urllib.request.Request(stack.url, data=INIT, method="POST", headers={
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Origin": "http://evil.example.com",
    })
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("a foreign Origin must be refused")
    except urllib.error.HTTPError as error:
        assert error.code == 403


def test_the_cli_reaches_the_backends_directly(stack):
    ping = stack.cli("--json", "ping")
    assert ping.returncode == 0, ping.stderr
    assert set(json.loads(ping.stdout)) == {"luanette", "hootenanny", "chaosgarden"}
    lua = stack.cli("--json", "lua", "return 1 + 2")
    assert lua.returncode == 0, lua.stderr
    assert json.loads(lua.stdout)["result"] == 3
    missing = stack.cli("cas", "inspect", "0" * 64)
    assert missing.returncode == 4, (missing.returncode, missing.stderr)
    refused = stack.cli("lua", "error('no')")
    assert refused.returncode == 3 and "no" in refused.stderr
    # Same host: a file is imported straight into the shared CAS, no bytes over ZMQ.
    sample = stack.data / "sample.txt"
    sample.write_bytes(b"x" * 100_000)
    put = stack.cli("--json", "cas", "put", str(sample), "--mime", "text/plain", "--cas-root", str(stack.data / "cas"))
    assert put.returncode == 0, put.stderr
    put = json.loads(put.stdout)
    assert put["importedInto"] == str(stack.data / "cas")
    inspected = stack.cli("--json", "cas", "inspect", put["hash"][:12])
    assert json.loads(inspected.stdout)["object"]["size"] in ("100000", 100000)
    fetched = stack.cli("cas", "get", put["hash"], "-o", str(stack.data / "back.txt"))
    assert fetched.returncode == 0 and (stack.data / "back.txt").read_bytes() == b"x" * 100_000
    sent = stack.cli("--json", "send", "chaosgarden", '{"transport_status": {}}')
    assert json.loads(sent.stdout)["state"]["backend"] == "null"
    script = stack.data / "double.lua"
    script.write_text("function main(p) job.progress(1, 'done') return p.n * 2 end")
    stored = stack.cli("script", "store", str(script), "--tag", "cli")
    assert stored.returncode == 0 and len(stored.stdout.strip()) == 64, stored
    waited = stack.cli("--json", "job", "run", stored.stdout.strip(), "--params", '{"n": 4}', "--wait")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["result"] == 8
    failing = stack.cli("job", "run", stored.stdout.strip(), "--params", '{"n": "x"}', "--wait")
    assert failing.returncode == 6, (failing.returncode, failing.stderr)
    completions = stack.cli("completions", "bash")
    assert completions.returncode == 0 and "holler" in completions.stdout


def test_a_token_is_required_when_configured(tmp_path):
    stack = Stack(tmp_path, token="s3cret")
    try:
        request = urllib.request.Request(stack.url, data=INIT, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        })
        try:
            urllib.request.urlopen(request, timeout=5)
            raise AssertionError("a request without the token must be refused")
        except urllib.error.HTTPError as error:
            assert error.code == 401

        async def body(session):
            return await session.call_tool("lua_eval", {"code": "return 'ok'"})

        result = run(with_session(stack.url, body, headers={"Authorization": "Bearer s3cret"}))
        assert json.loads(text_of(result))["result"] == "ok"
    finally:
        assert stack.stop() == 0


def test_resources_prompts_and_completions_pass_through(stack):
    async def body(session):
        stored = await session.call_tool("script_store", {"content": "return 1", "tags": ["completion-test"]})
        script = json.loads(text_of(stored))["script"]["script_hash"]
        resources = await session.list_resources()
        templates = await session.list_resource_templates()
        stdlib = await session.read_resource("lua://stdlib")
        schema = await session.read_resource("hootenanny://graph/schema.graphql")
        prompts = await session.list_prompts()
        prompt = await session.get_prompt("write-script", {"goal": "transpose a melody"})
        from mcp.types import PromptReference
        completion = await session.complete(PromptReference(type="ref/prompt", name="debug-script"),
                                            {"name": "script_hash", "value": script[:6]})
        return script, resources, templates, stdlib, schema, prompts, prompt, completion

    script, resources, templates, stdlib, schema, prompts, prompt, completion = run(with_session(stack.url, body))
    uris = {str(r.uri) for r in resources.resources}
    assert {"lua://stdlib", "lua://workers", "hootenanny://graph/schema.graphql"} <= uris, uris
    assert any("{" in t.uriTemplate for t in templates.resourceTemplates)
    assert "midi.transpose" in stdlib.contents[0].text
    assert "type Query" in schema.contents[0].text or "Query" in schema.contents[0].text
    assert {"write-script", "debug-script"} <= {p.name for p in prompts.prompts}
    assert "transpose a melody" in prompt.messages[0].content.text
    assert script in completion.completion.values


SLOW = """
function main(p)
  for i = 1, p.steps do
    local t = os.clock()
    while os.clock() - t < p.step_secs do end
    job.progress(i / p.steps, "step " .. i)
  end
  return "done"
end
"""


def test_a_job_can_be_waited_for_with_progress(stack):
    seen = []

    async def progress(value, total, message):
        seen.append((value, total, message))

    async def body(session):
        stored = await session.call_tool("script_store", {"content": SLOW, "tags": ["mcp-test"]})
        script = json.loads(text_of(stored))["script"]["script_hash"]
        return await session.call_tool(
            "job_execute",
            {"script_hash": script, "params": {"steps": 3, "step_secs": 0.4}, "wait": True},
            progress_callback=progress,
        )

    result = run(with_session(stack.url, body))
    assert not result.isError, text_of(result)
    job = json.loads(text_of(result))
    assert job["state"] == "succeeded" and job["result"] == "done"
    fractions = [round(v, 2) for v, _, _ in seen]
    assert 0.33 in fractions or 0.67 in fractions, seen
    assert fractions == sorted(fractions), "progress only goes forward"
    assert all(total == 1.0 for _, total, _ in seen)


def test_cancelling_the_call_cancels_the_job(stack):
    from mcp import types

    async def body(session):
        stored = await session.call_tool("script_store", {"content": SLOW, "tags": ["mcp-cancel"]})
        script = json.loads(text_of(stored))["script"]["script_hash"]
        request_id = session._request_id  # the id the next request gets
        call = asyncio.create_task(session.call_tool(
            "job_execute",
            {"script_hash": script, "params": {"steps": 100, "step_secs": 0.2}, "wait": True},
        ))
        await asyncio.sleep(1.0)
        await session.send_notification(types.ClientNotification(types.CancelledNotification(
            method="notifications/cancelled",
            params=types.CancelledNotificationParams(requestId=request_id, reason="changed my mind"),
        )))
        try:
            await asyncio.wait_for(call, timeout=3)
        except (asyncio.TimeoutError, Exception):
            call.cancel()
        jobs = await session.call_tool("job_list", {"status": "cancelled"})
        return script, json.loads(text_of(jobs))

    script, jobs = run(with_session(stack.url, body))
    assert any(j["script_hash"] == script for j in jobs.get("jobs", [])), jobs


def test_sessions_hear_when_a_backend_comes_back(tmp_path):
    """`holler serve` starts with Luanette down; when it comes up, open sessions get
    notifications/tools/list_changed and its tools appear."""
    import subprocess
    import time
    from mcp import types
    from conftest import HOLLER, ROOT, free_port

    lua_endpoint = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    # Gateway and Luanette share a data dir, as on one host: neither has a key there, so both
    # run unsigned (a key in ~/.local/share/hootenanny must not sign for the gateway alone).
    env = {k: v for k, v in os.environ.items() if k not in ("HOOT_KEY", "HOOT_KEY_FILE")}
    env["HOOT_DATA_DIR"] = str(tmp_path / "lua")
    serve = subprocess.Popen(
        [str(HOLLER), "--luanette", lua_endpoint,
         "--hootenanny", f"tcp://127.0.0.1:{free_port()}", "--chaosgarden", f"tcp://127.0.0.1:{free_port()}",
         "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    luanette = None
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3)
                break
            except OSError:
                time.sleep(0.1)

        async def body():
            heard = asyncio.Event()

            async def on_message(message):
                if isinstance(message, types.ServerNotification) and isinstance(message.root, types.ToolListChangedNotification):
                    heard.set()

            async with streamablehttp_client(url) as (read, write, _):
                async with ClientSession(read, write, message_handler=on_message) as session:
                    await session.initialize()
                    before = {t.name for t in (await session.list_tools()).tools}
                    nonlocal luanette
                    luanette = subprocess.Popen(
                        [str(ROOT / "target" / "debug" / "luanette"), "--bind", lua_endpoint,
                         "--data-dir", str(tmp_path / "lua"), "--pub-bind", "none", "--health-bind", "none"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                    await asyncio.wait_for(heard.wait(), timeout=15)
                    after = {t.name for t in (await session.list_tools()).tools}
                    return before, after

        before, after = run(body())
        assert "lua_eval" not in before
        assert "lua_eval" in after
    finally:
        if luanette:
            luanette.terminate()
            luanette.wait(timeout=10)
        serve.terminate()
        assert serve.wait(timeout=10) == 0


def test_luanette_broadcasts_reach_subscribed_sessions(stack):
    from mcp import types

    async def body():
        updated, listed = [], asyncio.Event()

        async def on_message(message):
            if isinstance(message, types.ServerNotification):
                if isinstance(message.root, types.ResourceUpdatedNotification):
                    updated.append(str(message.root.params.uri))
                elif isinstance(message.root, types.ResourceListChangedNotification):
                    listed.set()

        async with streamablehttp_client(stack.url) as (read, write, _):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await session.initialize()
                stored = await session.call_tool("script_store", {"content": SLOW, "tags": ["broadcast-test"]})
                script = json.loads(text_of(stored))["script"]["script_hash"]
                await asyncio.wait_for(listed.wait(), timeout=5)
                started = await session.call_tool(
                    "job_execute", {"script_hash": script, "params": {"steps": 4, "step_secs": 0.3}})
                job_id = json.loads(text_of(started))["job_id"]
                await session.subscribe_resource(f"lua://jobs/{job_id}")
                await session.call_tool("job_poll", {"job_ids": [job_id], "timeout_ms": 10000})
                await asyncio.sleep(0.3)
                return job_id, updated

    job_id, updated = run(body())
    assert f"lua://jobs/{job_id}" in updated, updated
    assert all(uri == f"lua://jobs/{job_id}" for uri in updated), "only the subscribed job"
