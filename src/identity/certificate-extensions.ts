import type { X509Certificate } from "node:crypto";
import {
  DerError,
  readChildren,
  readElement,
  readObjectIdentifier,
  TAG_BIT_STRING,
  TAG_BOOLEAN,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_OBJECT_IDENTIFIER,
  TAG_SEQUENCE,
} from "./der.ts";
import { X509SvidError } from "./errors.ts";

const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_KEY_USAGE = "2.5.29.15";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
/** Critical extensions we understand; any other critical one makes the certificate unusable (RFC 5280 §4.2). */
const HANDLED_CRITICAL = new Set([OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_SUBJECT_ALT_NAME]);

/** GeneralName [6] IMPLICIT IA5String. */
const TAG_SAN_URI = 0x86;

export interface KeyUsage {
  readonly digitalSignature: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
}

export interface CertificateExtensions {
  /** Absent when the certificate has no basicConstraints extension. */
  readonly basicConstraints?: { readonly ca: boolean; readonly pathLength?: number };
  /** Absent when the certificate has no keyUsage extension. */
  readonly keyUsage?: KeyUsage;
  /** Every uniformResourceIdentifier in the subjectAltName extension, in order. */
  readonly uris: readonly string[];
  readonly unhandledCritical: readonly string[];
}

function parseBasicConstraints(value: Uint8Array): { ca: boolean; pathLength?: number } {
  const fields = readChildren(readElement(value, TAG_SEQUENCE).content);
  let ca = false;
  let pathLength: number | undefined;
  let index = 0;
  const first = fields[index];
  if (first !== undefined && first.tag === TAG_BOOLEAN) {
    if (first.content.length !== 1) throw new DerError("malformed BOOLEAN");
    ca = first.content[0] !== 0;
    index++;
  }
  const second = fields[index];
  if (second !== undefined && second.tag === TAG_INTEGER) {
    const bytes = second.content;
    if (bytes.length === 0 || bytes.length > 4 || (bytes[0]! & 0x80) !== 0) {
      throw new DerError("pathLenConstraint out of range");
    }
    pathLength = bytes.reduce((n, b) => n * 256 + b, 0);
    index++;
  }
  if (index !== fields.length) throw new DerError("unexpected fields in basicConstraints");
  return pathLength === undefined ? { ca } : { ca, pathLength };
}

function parseKeyUsage(value: Uint8Array): KeyUsage {
  const bits = readElement(value, TAG_BIT_STRING).content;
  if (bits.length === 0 || bits[0]! > 7) throw new DerError("malformed BIT STRING");
  const first = bits[1] ?? 0;
  return {
    digitalSignature: (first & 0x80) !== 0,
    keyCertSign: (first & 0x04) !== 0,
    cRLSign: (first & 0x02) !== 0,
  };
}

function parseSanUris(value: Uint8Array): string[] {
  const names = readChildren(readElement(value, TAG_SEQUENCE).content);
  const uris: string[] = [];
  for (const name of names) {
    if (name.tag !== TAG_SAN_URI) continue;
    // IA5String is 7-bit ASCII; anything else is a forged name, not a URI.
    if (name.content.some((b) => b > 0x7f)) throw new DerError("URI SAN is not IA5String");
    uris.push(Buffer.from(name.content).toString("latin1"));
  }
  return uris;
}

interface RawExtension {
  readonly oid: string;
  readonly critical: boolean;
  readonly value: Uint8Array;
}

/** Context tag [3] EXPLICIT that wraps TBSCertificate.extensions. */
const TAG_EXTENSIONS = 0xa3;

/** Walks Certificate → TBSCertificate → extensions (RFC 5280 §4.1) without trusting any length. */
function certificateExtensionList(der: Uint8Array): RawExtension[] {
  const certificate = readChildren(readElement(der, TAG_SEQUENCE).content);
  const tbs = certificate[0];
  if (certificate.length !== 3 || tbs === undefined || tbs.tag !== TAG_SEQUENCE) {
    throw new DerError("not a Certificate");
  }
  const wrapper = readChildren(tbs.content).find((field) => field.tag === TAG_EXTENSIONS);
  if (wrapper === undefined) return [];
  return readChildren(readElement(wrapper.content, TAG_SEQUENCE).content).map((entry) => {
    if (entry.tag !== TAG_SEQUENCE) throw new DerError("malformed Extension");
    const fields = readChildren(entry.content);
    const [id, second, third] = fields;
    if (id === undefined || id.tag !== TAG_OBJECT_IDENTIFIER) throw new DerError("malformed Extension");
    const hasCritical = second !== undefined && second.tag === TAG_BOOLEAN;
    if (hasCritical && second.content.length !== 1) throw new DerError("malformed BOOLEAN");
    const critical = hasCritical && second.content[0] !== 0;
    const valueField = hasCritical ? third : second;
    const expectedLength = hasCritical ? 3 : 2;
    if (valueField === undefined || valueField.tag !== TAG_OCTET_STRING || fields.length !== expectedLength) {
      throw new DerError("malformed Extension");
    }
    return { oid: readObjectIdentifier(id.content), critical, value: valueField.content };
  });
}

/**
 * Reads the extensions SVID verification depends on straight from the certificate's DER.
 * Node's X509Certificate.ca folds keyUsage into the answer, so we decode basicConstraints and
 * keyUsage ourselves. Throws X509SvidError("malformed-certificate") on anything unparsable.
 */
export function readCertificateExtensions(cert: X509Certificate, role: string): CertificateExtensions {
  try {
    const extensions = certificateExtensionList(new Uint8Array(cert.raw));
    const seen = new Set<string>();
    let basicConstraints: { ca: boolean; pathLength?: number } | undefined;
    let keyUsage: KeyUsage | undefined;
    let uris: string[] = [];
    const unhandledCritical: string[] = [];
    for (const extension of extensions) {
      const oid = extension.oid;
      // Two copies of one extension let a verifier and a TLS stack disagree on which counts.
      if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
      seen.add(oid);
      const value = extension.value;
      if (oid === OID_BASIC_CONSTRAINTS) basicConstraints = parseBasicConstraints(value);
      else if (oid === OID_KEY_USAGE) keyUsage = parseKeyUsage(value);
      else if (oid === OID_SUBJECT_ALT_NAME) uris = parseSanUris(value);
      if (extension.critical && !HANDLED_CRITICAL.has(oid)) unhandledCritical.push(oid);
    }
    return {
      uris,
      unhandledCritical,
      ...(basicConstraints ? { basicConstraints } : {}),
      ...(keyUsage ? { keyUsage } : {}),
    };
  } catch (error) {
    if (!(error instanceof DerError)) throw error;
    const reason = error.message;
    throw new X509SvidError("malformed-certificate", `${role} certificate is malformed (${reason})`);
  }
}
