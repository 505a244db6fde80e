// HOOT/1 by hand, with nothing but the generated types and a DEALER (README: "Writing a client
// in another language"). Run: npm run build && node dist/examples/raw.js [endpoint]
import { createHmac } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Dealer } from "zeromq";

import { EnvelopeSchema } from "../src/gen/hooteproto/v1/envelope_pb.js";

// The key `holler up` creates (PROTOCOL.md §5); without one, frame 2 is empty.
const dataDir = process.env.HOOT_DATA_DIR ?? join(homedir(), ".local", "share", "hootenanny");
const keyFile = process.env.HOOT_KEY_FILE ?? join(dataDir, "hoot.key");
const key = existsSync(keyFile) ? readFileSync(keyFile, "latin1").trimEnd() : undefined;

const socket = new Dealer({ linger: 0 });
socket.connect(process.argv[2] ?? "tcp://127.0.0.1:5570"); // luanette
const request = create(EnvelopeSchema, {
  id: `demo-${crypto.randomUUID()}`,
  timeoutMs: 5000,
  payload: { case: "luaEval", value: { code: "return 6 * 7" } },
});
// toBinary writes maps in object key order; a message with maps wants toCanonicalBinary.
const body = toBinary(EnvelopeSchema, request);
const signature = key === undefined ? Buffer.alloc(0) : createHmac("sha256", key).update(body).digest();
await socket.send(["HOOT/1", signature, body]);
const [, , replyBody] = await socket.receive(); // frame 2: the reply's signature (empty without a key)
const reply = fromBinary(EnvelopeSchema, replyBody);
if (reply.id !== request.id) throw new Error("a reply to another request");
const { payload } = reply;
console.log(payload.case === "luaEvalReply" ? payload.value.result?.kind.value : payload.value);
socket.close();
