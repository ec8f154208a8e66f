import { ReleaseError } from "./errors.ts";
import { digestHex, type Digest } from "./oci.ts";

// in-toto Attestation Framework, Statement layer v1 (github.com/in-toto/attestation, spec/v1/statement.md).

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";

export interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest: Record<string, string>;
  annotations?: Record<string, unknown>;
}

export interface Statement<P = unknown> {
  _type: typeof STATEMENT_TYPE;
  subject: ResourceDescriptor[];
  predicateType: string;
  predicate: P;
}

/** A statement about one image: its subject is the image manifest digest. */
export function imageStatement<P>(name: string, manifestDigest: Digest, predicateType: string, predicate: P): Statement<P> {
  return { _type: STATEMENT_TYPE, subject: [{ name, digest: { sha256: digestHex(manifestDigest)! } }], predicateType, predicate };
}

export function encodeStatement(statement: Statement): Buffer {
  return Buffer.from(JSON.stringify(statement), "utf8");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function malformed(what: string, message: string): ReleaseError {
  return new ReleaseError("malformed-statement", `${what}: ${message}`);
}

const HEX = /^[0-9a-f]+$/;

/** An in-toto v1 statement of `predicateType`, checked for shape: its subjects, its type, a predicate object. */
export function parseStatement(bytes: Uint8Array, what: string, predicateType: string): Statement<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw malformed(what, "the payload is not JSON");
  }
  if (!isRecord(value)) throw malformed(what, "the payload is not an in-toto statement (a JSON object)");
  if (value._type !== STATEMENT_TYPE) throw malformed(what, `_type is not ${STATEMENT_TYPE}`);
  if (value.predicateType !== predicateType) {
    throw malformed(what, `predicateType is ${JSON.stringify(String(value.predicateType).slice(0, 80))}, expected ${predicateType}`);
  }
  if (!Array.isArray(value.subject) || value.subject.length === 0) throw malformed(what, "subject is not a non-empty array");
  const subject = value.subject.map((s: unknown, i: number): ResourceDescriptor => {
    if (!isRecord(s) || !isRecord(s.digest) || Object.keys(s.digest).length === 0) throw malformed(what, `subject ${i} has no digest`);
    for (const [algorithm, hex] of Object.entries(s.digest)) {
      if (typeof hex !== "string" || !HEX.test(hex)) throw malformed(what, `subject ${i} has a ${algorithm} digest that is not lowercase hex`);
    }
    return { ...(typeof s.name === "string" ? { name: s.name } : {}), digest: s.digest as Record<string, string> };
  });
  if (!isRecord(value.predicate)) throw malformed(what, "predicate is not an object");
  return { _type: STATEMENT_TYPE, subject, predicateType, predicate: value.predicate };
}

/** The statement must be about the image `manifestDigest`: one of its subjects carries that sha256. */
export function requireSubject(statement: Statement, manifestDigest: Digest, what: string): void {
  const hex = digestHex(manifestDigest)!;
  if (statement.subject.some((s) => s.digest.sha256 === hex)) return;
  const named = statement.subject.map((s) => (s.digest.sha256 === undefined ? "(no sha256)" : `sha256:${s.digest.sha256}`)).join(", ");
  throw new ReleaseError("digest-mismatch", `${what} is about ${named}, not the image ${manifestDigest}`);
}
