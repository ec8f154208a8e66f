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
import { parseNameConstraints, type NameConstraints, type SubjectAltNames } from "./name-constraints.ts";

const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_KEY_USAGE = "2.5.29.15";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_SUBJECT_ALT_NAME = "2.5.29.17";
const OID_NAME_CONSTRAINTS = "2.5.29.30";
/** Critical extensions we understand; any other critical one makes the certificate unusable (RFC 5280 §4.2). */
const HANDLED_CRITICAL = new Set([OID_BASIC_CONSTRAINTS, OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_SUBJECT_ALT_NAME, OID_NAME_CONSTRAINTS]);

/** GeneralName choices, IMPLICIT: [1] rfc822Name, [2] dNSName, [6] uniformResourceIdentifier (IA5String), [7] iPAddress. */
const TAG_SAN_EMAIL = 0x81;
const TAG_SAN_DNS = 0x82;
const TAG_SAN_URI = 0x86;
const TAG_SAN_IP = 0x87;

export interface KeyUsage {
  readonly digitalSignature: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
}

/** The subjectAltName lists are empty when the certificate has no such extension. */
export interface CertificateExtensions extends SubjectAltNames {
  /** Absent when the certificate has no basicConstraints extension. */
  readonly basicConstraints?: { readonly ca: boolean; readonly pathLength?: number };
  /** Absent when the certificate has no keyUsage extension. */
  readonly keyUsage?: KeyUsage;
  /** Every uniformResourceIdentifier in the subjectAltName extension, in order. */
  readonly uris: readonly string[];
  /** Absent when the certificate has no nameConstraints extension. */
  readonly nameConstraints?: NameConstraints;
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

function ia5Name(content: Uint8Array, what: string): string {
  // IA5String is 7-bit ASCII; anything else is a forged name.
  if (content.some((b) => b > 0x7f)) throw new DerError(`${what} SAN is not IA5String`);
  return Buffer.from(content).toString("latin1");
}

function parseSubjectAltNames(value: Uint8Array): SubjectAltNames {
  const names = readChildren(readElement(value, TAG_SEQUENCE).content);
  const sans = { dnsNames: [] as string[], emails: [] as string[], ipAddresses: [] as Uint8Array[], uris: [] as string[] };
  for (const name of names) {
    if (name.tag === TAG_SAN_URI) sans.uris.push(ia5Name(name.content, "URI"));
    else if (name.tag === TAG_SAN_DNS) sans.dnsNames.push(ia5Name(name.content, "DNS"));
    else if (name.tag === TAG_SAN_EMAIL) sans.emails.push(ia5Name(name.content, "email"));
    else if (name.tag === TAG_SAN_IP) {
      if (name.content.length !== 4 && name.content.length !== 16) throw new DerError(`IP SAN of length ${name.content.length}`);
      sans.ipAddresses.push(name.content.slice());
    }
  }
  return sans;
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
    let sans: SubjectAltNames = { dnsNames: [], emails: [], ipAddresses: [], uris: [] };
    let nameConstraints: NameConstraints | undefined;
    const unhandledCritical: string[] = [];
    for (const extension of extensions) {
      const oid = extension.oid;
      // Two copies of one extension let a verifier and a TLS stack disagree on which counts.
      if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
      seen.add(oid);
      const value = extension.value;
      if (oid === OID_BASIC_CONSTRAINTS) basicConstraints = parseBasicConstraints(value);
      else if (oid === OID_KEY_USAGE) keyUsage = parseKeyUsage(value);
      else if (oid === OID_SUBJECT_ALT_NAME) sans = parseSubjectAltNames(value);
      else if (oid === OID_NAME_CONSTRAINTS) {
        const parsed = parseNameConstraints(value);
        nameConstraints = parsed.constraints;
        // Constraints on name types we do not check may be ignored only when the issuer allowed it (not critical).
        if (parsed.unhandled && extension.critical) unhandledCritical.push(oid);
      }
      if (extension.critical && !HANDLED_CRITICAL.has(oid)) unhandledCritical.push(oid);
    }
    return {
      ...sans,
      unhandledCritical,
      ...(basicConstraints ? { basicConstraints } : {}),
      ...(keyUsage ? { keyUsage } : {}),
      ...(nameConstraints ? { nameConstraints } : {}),
    };
  } catch (error) {
    if (!(error instanceof DerError)) throw error;
    const reason = error.message;
    throw new X509SvidError("malformed-certificate", `${role} certificate is malformed (${reason})`);
  }
}
