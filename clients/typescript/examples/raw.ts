// HOOT/1 by hand, with nothing but the generated types and a DEALER (README: "Writing a client
// in another language"). Run: npm run build && node dist/examples/raw.js [endpoint]
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Dealer } from "zeromq";

import { EnvelopeSchema } from "../src/gen/hooteproto/v1/envelope_pb.js";

const socket = new Dealer({ linger: 0 });
socket.connect(process.argv[2] ?? "tcp://127.0.0.1:5570"); // luanette
const request = create(EnvelopeSchema, {
  id: `demo-${crypto.randomUUID()}`,
  timeoutMs: 5000,
  payload: { case: "luaEval", value: { code: "return 6 * 7" } },
});
// toBinary writes maps in object key order; a message with maps wants toCanonicalBinary.
await socket.send(["HOOT/1", "", toBinary(EnvelopeSchema, request)]);
const [, , body] = await socket.receive(); // frame 2, the signature, is empty without a key
const reply = fromBinary(EnvelopeSchema, body);
if (reply.id !== request.id) throw new Error("a reply to another request");
const { payload } = reply;
console.log(payload.case === "luaEvalReply" ? payload.value.result?.kind.value : payload.value);
socket.close();
