"""The golden vectors in schema/testdata/ decode and re-encode byte for byte, from binary and
from proto3 JSON, so Python, Rust and the spec agree."""

import glob
import os

import pytest
from google.protobuf import json_format

from hooteproto.v1 import broadcast_pb2, envelope_pb2

TESTDATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "schema", "testdata")
CASES = [
    (message, path)
    # maps/: Envelopes whose maps have many keys (integer-like and non-ASCII among them).
    for kind, message in (
        ("envelope", envelope_pb2.Envelope),
        ("broadcast", broadcast_pb2.Broadcast),
        ("maps", envelope_pb2.Envelope),
    )
    for path in sorted(glob.glob(os.path.join(TESTDATA, kind, "*.binpb")))
]


def test_every_payload_case_has_a_vector():
    cases = {f.name for f in envelope_pb2.Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields}
    vectors = {os.path.basename(p).removesuffix(".binpb") for m, p in CASES if m is envelope_pb2.Envelope}
    assert cases <= vectors, f"no vector for {sorted(cases - vectors)}"


@pytest.mark.parametrize("message,path", CASES, ids=[os.path.basename(p) for _, p in CASES])
def test_vector_round_trips(message, path):
    with open(path, "rb") as f:
        golden = f.read()
    decoded = message.FromString(golden)
    assert decoded.SerializeToString(deterministic=True) == golden, "binary round trip"
    with open(path.removesuffix(".binpb") + ".json") as f:
        from_json = json_format.Parse(f.read(), message())
    assert from_json.SerializeToString(deterministic=True) == golden, "proto3 JSON gives the same bytes"
