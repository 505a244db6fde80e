"""Starts `holler up` (the whole stack in one process) on free ports in a temporary data
directory, for tests that talk to it as an MCP client would."""

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOLLER = ROOT / "target" / "debug" / "holler"


def declared_tools() -> dict:
    """Tool name -> service, read from the `(hooteproto.v1.tool)` options in schema/ (the only
    list of tools there is)."""
    tools = {}
    for proto in sorted((ROOT / "schema" / "hooteproto" / "v1").glob("*.proto")):
        for block in re.findall(r"option \(hooteproto\.v1\.tool\) = \{(.*?)\};", proto.read_text(), re.S):
            name = re.search(r'name: "([^"]+)"', block).group(1)
            tools[name] = re.search(r'service: "([^"]+)"', block).group(1)
    return tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """`holler up`; pass the `endpoints` and `port` of a stopped stack to restart it in place."""

    def __init__(self, tmp: Path, token: str | None = None, endpoints: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.endpoints = endpoints or {
            name: f"tcp://127.0.0.1:{free_port()}" for name in ("luanette", "hootenanny", "chaosgarden")
        }
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.data = tmp / "data"
        args = [
            str(HOLLER),
            "--luanette", self.endpoints["luanette"],
            "--hootenanny", self.endpoints["hootenanny"],
            "--chaosgarden", self.endpoints["chaosgarden"],
            "up",
            "--data-dir", str(self.data),
            "--port", str(self.port),
            "--audio-device", "none",
            "--broadcasts", f"tcp://127.0.0.1:{free_port()}",
            "--no-health",
        ]
        if token:
            token_file = tmp / "token"
            token_file.write_text(token + "\n")
            args += ["--token-file", str(token_file)]
        self.log = open(tmp / "holler.log", "a")
        # No key from the environment: holler up creates (or reuses) <data dir>/hoot.key.
        env = {k: v for k, v in os.environ.items() if k not in ("HOOT_KEY", "HOOT_KEY_FILE")}
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{self.port}/health")
                if token:
                    request.add_header("Authorization", f"Bearer {token}")
                with urllib.request.urlopen(request, timeout=3) as reply:
                    if b'"serving"' in reply.read():
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"holler up did not come up; log: {(tmp / 'holler.log').read_text()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """The `holler` CLI as a user on this host runs it: it finds the key `holler up` created
        in the data directory by itself."""
        env = dict(os.environ, **{f"HOLLER_{k.upper()}": v for k, v in self.endpoints.items()})
        for name in ("HOOT_KEY", "HOOT_KEY_FILE"):
            env.pop(name, None)
        env["HOOT_DATA_DIR"] = str(self.data)
        return subprocess.run([str(HOLLER), *args], env=env, capture_output=True, text=True, timeout=60)

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    yield s
    assert s.stop() == 0, "holler up exits cleanly on SIGTERM"
