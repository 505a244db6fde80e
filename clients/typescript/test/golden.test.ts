// The golden vectors in schema/testdata/ decode and re-encode byte for byte, from binary and
// from proto3 JSON, and render the same JSON, so TypeScript, Rust and Python agree.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { type DescMessage, fromBinary, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";

import { BroadcastSchema, EnvelopeSchema, toCanonicalBinary } from "../src/index.js";

const TESTDATA = new URL("../../../../schema/testdata/", import.meta.url);
// maps/ holds Envelopes whose maps have many keys, integer-like ones among them.
const DIRS: [string, DescMessage][] = [
  ["envelope", EnvelopeSchema],
  ["broadcast", BroadcastSchema],
  ["maps", EnvelopeSchema],
];

function vectors(dir: string): string[] {
  return readdirSync(new URL(`${dir}/`, TESTDATA))
    .filter((f) => f.endsWith(".binpb"))
    .map((f) => f.slice(0, -".binpb".length))
    .sort();
}

test("every payload case has a vector", () => {
  const cases = EnvelopeSchema.oneofs[0].fields.map((f) => f.name);
  const missing = cases.filter((c) => !vectors("envelope").includes(c));
  assert.deepEqual(missing, [], `no vector for ${missing.join(", ")}`);
  assert.ok(cases.length >= 60);
});

for (const [dir, schema] of DIRS) {
  describe(dir, () => {
    for (const name of vectors(dir)) {
      test(name, () => {
        const golden = readFileSync(new URL(`${dir}/${name}.binpb`, TESTDATA));
        const json = JSON.parse(readFileSync(new URL(`${dir}/${name}.json`, TESTDATA), "utf8")) as JsonValue;
        const decoded = fromBinary(schema, golden);
        assert.deepEqual(Buffer.from(toCanonicalBinary(schema, decoded)), golden, "binary round trip");
        const fromText = fromJson(schema, json);
        assert.deepEqual(Buffer.from(toCanonicalBinary(schema, fromText)), golden, "proto3 JSON gives the same bytes");
        assert.deepEqual(toJson(schema, decoded), json, "renders the same proto3 JSON");
      });
    }
  });
}
