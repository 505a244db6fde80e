// Errors with the canonical HOOT/1 codes (schema/PROTOCOL.md §4).

import type { JsonObject } from "@bufbuild/protobuf";
import { ErrorCode, type Error as ErrorMessage } from "./gen/hooteproto/v1/error_pb.js";

/**
 * The peer answered with an `Error`, or the request failed locally (deadline, size).
 *
 * `code` is the canonical `ErrorCode` (a code this client does not know counts as UNKNOWN);
 * `codeName` its name ("NOT_FOUND"); `details` the error's structured detail.
 */
export class HootError extends Error {
  readonly code: ErrorCode;
  readonly codeName: string;
  readonly details: JsonObject;

  constructor(code: number, message: string, details: JsonObject = {}) {
    const known = ErrorCode[code] !== undefined;
    const name = known ? ErrorCode[code] : ErrorCode[ErrorCode.UNKNOWN];
    super(`${name}: ${message}`);
    this.name = "HootError";
    this.code = known ? code : ErrorCode.UNKNOWN;
    this.codeName = name;
    this.details = details;
  }

  /** The error an `Error` reply carries. */
  static fromReply(error: ErrorMessage): HootError {
    return new HootError(error.code, error.message, error.details ?? {});
  }
}
