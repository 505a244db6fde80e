// Deterministic encoding (PROTOCOL.md §3): fields in number order and map entries sorted by
// key, the form the golden vectors and the Rust and Python encoders use.
//
// protobuf-es already writes fields in number order, but it writes a map in its object's key
// order, and a JavaScript object always lists integer-like keys ("2", "10") first, in numeric
// order, whatever order they were inserted in. So sorted insertion cannot work for every key;
// instead the encoded bytes are rewritten with every map's entries sorted, guided by the schema.

import { type DescField, type DescMessage, type MessageShape, ScalarType, toBinary } from "@bufbuild/protobuf";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

/** Encodes `message` deterministically (see the module comment). */
export function toCanonicalBinary<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  return canonicalize(schema, toBinary(schema, message));
}

/** Rewrites encoded `bytes` of message type `schema` with every map (at any depth) sorted by key. */
export function canonicalize(schema: DescMessage, bytes: Uint8Array): Uint8Array {
  const reader = new BinaryReader(bytes);
  const writer = new BinaryWriter();
  // Entries of the map field being read; protobuf-es writes a field's entries together.
  let map: { field: DescField & { fieldKind: "map" }; entries: Entry[] } | undefined;
  const flush = () => {
    if (map === undefined) return;
    map.entries.sort((a, b) => compareKeys(a.key, b.key));
    for (const entry of map.entries) writer.tag(map.field.number, WireType.LengthDelimited).bytes(entry.bytes);
    map = undefined;
  };
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = schema.fields.find((f) => f.number === number);
    if (map !== undefined && map.field !== field) flush();
    if (field?.fieldKind === "map" && wireType === WireType.LengthDelimited) {
      map ??= { field, entries: [] };
      map.entries.push(mapEntry(field, reader.bytes()));
    } else if (isMessageField(field) && wireType === WireType.LengthDelimited) {
      writer.tag(number, wireType).bytes(canonicalize(field.message, reader.bytes()));
    } else {
      // Scalars, enums, packed lists and unknown fields are already canonical: copy them.
      writer.tag(number, wireType).raw(reader.skip(wireType, number));
    }
  }
  flush();
  return writer.finish();
}

type Key = Uint8Array | bigint;
interface Entry {
  key: Key;
  bytes: Uint8Array;
}

function isMessageField(field: DescField | undefined): field is DescField & { message: DescMessage } {
  return field !== undefined && (field.fieldKind === "message" || field.fieldKind === "list") && field.message !== undefined;
}

/** One map entry, its value canonicalized, with the key it sorts by. */
function mapEntry(field: DescField & { fieldKind: "map" }, bytes: Uint8Array): Entry {
  const reader = new BinaryReader(bytes);
  const writer = new BinaryWriter();
  let key: Key = field.mapKey === ScalarType.STRING ? new Uint8Array() : 0n;
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1) {
      const raw = reader.skip(wireType, number);
      key = readKey(field.mapKey, raw);
      writer.tag(number, wireType).raw(raw);
    } else if (number === 2 && field.mapKind === "message" && wireType === WireType.LengthDelimited) {
      writer.tag(number, wireType).bytes(canonicalize(field.message, reader.bytes()));
    } else {
      writer.tag(number, wireType).raw(reader.skip(wireType, number));
    }
  }
  return { key, bytes: writer.finish() };
}

/** A map key as it sorts: strings by their UTF-8 bytes (as Rust and C++ compare them), the rest by value. */
function readKey(type: ScalarType, raw: Uint8Array): Key {
  const reader = new BinaryReader(raw);
  switch (type) {
    case ScalarType.STRING:
      return reader.bytes();
    case ScalarType.BOOL:
      return reader.bool() ? 1n : 0n;
    case ScalarType.INT32:
      return BigInt(reader.int32());
    case ScalarType.SINT32:
      return BigInt(reader.sint32());
    case ScalarType.UINT32:
      return BigInt(reader.uint32());
    case ScalarType.FIXED32:
      return BigInt(reader.fixed32());
    case ScalarType.SFIXED32:
      return BigInt(reader.sfixed32());
    case ScalarType.INT64:
      return BigInt(reader.int64());
    case ScalarType.SINT64:
      return BigInt(reader.sint64());
    case ScalarType.UINT64:
      return BigInt(reader.uint64());
    case ScalarType.FIXED64:
      return BigInt(reader.fixed64());
    case ScalarType.SFIXED64:
      return BigInt(reader.sfixed64());
    default:
      return raw;
  }
}

function compareKeys(a: Key, b: Key): number {
  if (typeof a === "bigint" && typeof b === "bigint") return a < b ? -1 : a > b ? 1 : 0;
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.compare(a, b);
  return 0;
}
