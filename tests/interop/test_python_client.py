"""A HOOT/1 client written from schema/ and schema/PROTOCOL.md alone.

Generates Python bindings from schema/ with grpcio-tools at test time (nothing generated is
checked in), then talks to the Rust example server (`cargo run --example echo-server`) over pyzmq.
Also checks the golden vectors in schema/testdata/ and the examples in PROTOCOL.md §14, so the
Rust encoder, the Python encoder and the spec agree byte for byte.
"""

import glob
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import grpc_tools
import pytest
import zmq
from google.protobuf import json_format
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "schema")
PROTOCOL = b"HOOT/1"


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Bindings generated from schema/ (PROTOCOL.md: the messages live in hooteproto/v1/*.proto)."""
    out = str(tmp_path_factory.mktemp("generated"))
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(glob.glob(os.path.join(SCHEMA, "hooteproto", "v1", "*.proto")))
    assert protoc.main(["protoc", f"-I{SCHEMA}", f"-I{wkt}", f"--python_out={out}", *files]) == 0
    sys.path.insert(0, out)
    from hooteproto.v1 import broadcast_pb2, envelope_pb2, lua_pb2, worker_pb2  # noqa: E402

    class Bindings:
        Envelope = envelope_pb2.Envelope
        Broadcast = broadcast_pb2.Broadcast
        PingRequest = worker_pb2.PingRequest
        LuaEvalRequest = lua_pb2.LuaEvalRequest

    return Bindings


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_echo_server(*extra_args, env=None):
    binary = os.environ.get("HOOT_ECHO_SERVER", os.path.join(ROOT, "target", "debug", "examples", "echo-server"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    if env is None:
        # Like every Hootenanny program, the server would use <data dir>/hoot.key if it exists:
        # point it at an empty data dir so a key in ~/.local/share/hootenanny cannot sign this test.
        env = {k: v for k, v in os.environ.items() if k not in ("HOOT_KEY", "HOOT_KEY_FILE")}
        env["HOOT_DATA_DIR"] = tempfile.mkdtemp(prefix="hoot-interop-")
    proc = subprocess.Popen([binary, "--bind", endpoint, *extra_args], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().startswith(b"echo-server listening"), "echo-server did not start"
    return proc, endpoint


class HootClient:
    """PROTOCOL.md §2-§5: a DEALER sending [HOOT/1, signature, envelope], matching replies by id."""

    def __init__(self, pb, endpoint, key=None, timeout_ms=3000):
        self.pb, self.key, self.timeout_ms = pb, key, timeout_ms
        self.prefix = f"py-{uuid.uuid4().hex[:8]}"
        self.counter = 0
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, self.prefix.encode())
        self.sock.connect(endpoint)

    def sign(self, body):
        return hmac.new(self.key, body, hashlib.sha256).digest() if self.key else b""

    def request(self, **payload):
        self.counter += 1
        envelope = self.pb.Envelope(id=f"{self.prefix}-{self.counter}", timeout_ms=self.timeout_ms, **payload)
        body = envelope.SerializeToString(deterministic=True)
        self.sock.send_multipart([PROTOCOL, self.sign(body), body])
        deadline = time.monotonic() + self.timeout_ms / 1000
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(remaining * 1000) + 1):
                break
            frames = self.sock.recv_multipart()
            assert len(frames) == 3 and frames[0] == PROTOCOL, frames
            if self.key:
                assert hmac.compare_digest(frames[1], self.sign(frames[2])), "reply signature"
            reply = self.pb.Envelope.FromString(frames[2])
            if reply.id == envelope.id:
                return reply
        raise TimeoutError(f"no reply to {envelope.id}")

    def close(self):
        self.sock.close()


@pytest.fixture
def server():
    proc, endpoint = start_echo_server()
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def test_ping_the_rust_example_server(pb, server):
    client = HootClient(pb, server)
    reply = client.request(ping=pb.PingRequest())
    assert reply.WhichOneof("payload") == "ping_reply"
    assert reply.ping_reply.service == "echo-server"
    client.close()


def test_lua_eval_echo_and_unimplemented_error(pb, server):
    client = HootClient(pb, server)
    reply = client.request(lua_eval=pb.LuaEvalRequest(code="return 1 + 1"))
    assert reply.WhichOneof("payload") == "success"
    assert reply.success.result.string_value == "return 1 + 1"
    reply = client.request(transport_status={})
    assert reply.WhichOneof("payload") == "error"
    assert reply.error.code == 12, "ERROR_CODE_UNIMPLEMENTED"
    assert "transport_status" in reply.error.message
    client.close()


def test_signed_exchange_with_a_shared_key(pb, tmp_path):
    key_file = tmp_path / "hoot.key"
    key_file.write_text("a-python-and-rust-shared-key\n")  # trailing newline is not part of the key
    proc, endpoint = start_echo_server("--key-file", str(key_file))
    try:
        signed = HootClient(pb, endpoint, key=b"a-python-and-rust-shared-key")
        assert signed.request(ping=pb.PingRequest()).WhichOneof("payload") == "ping_reply"
        unsigned = HootClient(pb, endpoint, timeout_ms=500)
        with pytest.raises(TimeoutError):
            unsigned.request(ping=pb.PingRequest())  # dropped, never answered (§5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_protocol_md_example_bytes(pb):
    body = pb.Envelope(id="ex-1", ping=pb.PingRequest()).SerializeToString(deterministic=True)
    assert body.hex() == "0a0465782d316200"
    signature = hmac.new(b"0123456789abcdef", body, hashlib.sha256).hexdigest()
    with open(os.path.join(SCHEMA, "PROTOCOL.md")) as f:
        assert signature in f.read(), "PROTOCOL.md §14 shows this signature"


@pytest.mark.parametrize("kind", ["envelope", "broadcast"])
def test_golden_vectors_decode_and_reencode_byte_identically(pb, kind):
    message_type = pb.Envelope if kind == "envelope" else pb.Broadcast
    paths = sorted(glob.glob(os.path.join(SCHEMA, "testdata", kind, "*.binpb")))
    assert paths, "golden vectors exist"
    for path in paths:
        with open(path, "rb") as f:
            golden = f.read()
        message = message_type.FromString(golden)
        assert message.SerializeToString(deterministic=True) == golden, path
        with open(path[: -len(".binpb")] + ".json") as f:
            assert json_format.MessageToDict(message) == json.load(f), path
