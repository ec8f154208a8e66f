import { sign, verify } from "node:crypto";
import type { SigningKey, TrustedKeys } from "../bundle/index.ts";
import { ReleaseError } from "./errors.ts";

// Dead Simple Signing Envelope v1 (github.com/secure-systems-lab/dsse, envelope.md and protocol.md).

export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";

export interface EnvelopeSignature {
  keyid: string;
  sig: string;
}

export interface Envelope {
  payload: string;
  payloadType: string;
  signatures: EnvelopeSignature[];
}

/** The envelope's bytes in a file: two-space JSON and a newline, fields in the spec's order. */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const ordered = {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signatures: envelope.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig })),
  };
  return Buffer.from(`${JSON.stringify(ordered, null, 2)}\n`);
}

/**
 * PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, LEN the byte length in ASCII decimal without
 * leading zeros: what a signature covers, so that the payload type is signed too.
 */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/** An envelope of `payload` with no signature yet. */
export function unsignedEnvelope(payload: Uint8Array, payloadType = IN_TOTO_PAYLOAD_TYPE): Envelope {
  return { payload: Buffer.from(payload).toString("base64"), payloadType, signatures: [] };
}

/** Adds the key's Ed25519 signature over PAE; a signature the same key made before is replaced. */
export function signEnvelope(envelope: Envelope, key: SigningKey): Envelope {
  const body = Buffer.from(envelope.payload, "base64");
  const sig = sign(null, pae(envelope.payloadType, body), key.key).toString("base64");
  return {
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signatures: [...envelope.signatures.filter((s) => s.keyid !== key.kid), { keyid: key.kid, sig }],
  };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Standard or URL-safe base64 (the spec accepts either), padding optional for the latter; null when neither. */
export function decodeBase64(text: string): Buffer | null {
  if (BASE64.test(text)) return Buffer.from(text, "base64");
  if (BASE64URL.test(text) && text.length % 4 !== 1) return Buffer.from(text, "base64url");
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function malformed(what: string, message: string): ReleaseError {
  return new ReleaseError("malformed-envelope", `${what}: ${message}`);
}

/** A DSSE envelope in JSON, checked for shape only: nothing here is verified. `what` names it in errors. */
export function parseEnvelope(bytes: Uint8Array, what: string, payloadType = IN_TOTO_PAYLOAD_TYPE): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw malformed(what, "not JSON");
  }
  if (!isRecord(value)) throw malformed(what, "not a DSSE envelope (a JSON object)");
  if (typeof value.payload !== "string" || decodeBase64(value.payload) === null) throw malformed(what, "payload is not base64");
  if (typeof value.payloadType !== "string") throw malformed(what, "payloadType is missing");
  if (value.payloadType !== payloadType) throw malformed(what, `payloadType is ${JSON.stringify(value.payloadType.slice(0, 80))}, expected ${payloadType}`);
  if (!Array.isArray(value.signatures)) throw malformed(what, "signatures is not an array");
  const signatures = value.signatures.map((s: unknown, i: number): EnvelopeSignature => {
    if (!isRecord(s) || typeof s.sig !== "string" || decodeBase64(s.sig) === null) throw malformed(what, `signature ${i} has no base64 sig`);
    if (s.keyid !== undefined && typeof s.keyid !== "string") throw malformed(what, `signature ${i} has a keyid that is not a string`);
    return { keyid: s.keyid ?? "", sig: s.sig };
  });
  return { payload: value.payload, payloadType: value.payloadType, signatures };
}

export interface VerifiedEnvelope {
  /** the payload bytes the signatures cover */
  payload: Buffer;
  /** the trusted key ids whose signatures verified, sorted */
  signedBy: string[];
}

/**
 * Verifies an envelope against trusted Ed25519 keys, by keyid: at least one signature must be by a trusted key, and
 * every signature by a trusted key must verify (a rotation adds keys; it never excuses a bad signature). Signatures
 * by other keys are ignored.
 */
export function verifyEnvelope(envelope: Envelope, keys: TrustedKeys, what: string): VerifiedEnvelope {
  if (envelope.signatures.length === 0) throw new ReleaseError("signature-missing", `${what} holds no signature`);
  const trusted = envelope.signatures.filter((s) => keys.has(s.keyid));
  if (trusted.length === 0) {
    const kids = envelope.signatures.map((s) => s.keyid || "(no keyid)").join(", ");
    throw new ReleaseError("unknown-key", `${what}: no signature is by a trusted key (signed by ${kids}; ${keys.size} key${keys.size === 1 ? "" : "s"} trusted)`);
  }
  const payload = decodeBase64(envelope.payload)!;
  const message = pae(envelope.payloadType, payload);
  for (const s of trusted) {
    if (!verify(null, message, keys.get(s.keyid)!.key, decodeBase64(s.sig)!)) {
      throw new ReleaseError("bad-signature", `${what}: the signature by trusted key ${s.keyid} does not verify: the envelope was altered, or the signature was not made by that key`);
    }
  }
  return { payload, signedBy: [...new Set(trusted.map((s) => s.keyid))].sort() };
}
