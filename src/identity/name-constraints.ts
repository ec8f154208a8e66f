import { isIP } from "node:net";
import { DerError, readChildren, readElement, TAG_SEQUENCE } from "./der.ts";

/**
 * RFC 5280 §4.2.1.10 name constraints, with the semantics of Go's crypto/x509 (which go-spiffe relies on): DNS,
 * email, IP and URI subtrees; a leading dot means "subdomains only" for every domain-like type; a URI constraint
 * applies to the URI's host, so for a SPIFFE ID to its trust domain. Other name types make the extension
 * unhandled, which refuses the certificate only when the extension is critical.
 */

/** The names a certificate claims in its subjectAltName, by the types name constraints govern. */
export interface SubjectAltNames {
  readonly dnsNames: readonly string[];
  readonly emails: readonly string[];
  readonly ipAddresses: readonly Uint8Array[];
  readonly uris: readonly string[];
}

interface IpRange {
  readonly network: Uint8Array;
  readonly mask: Uint8Array;
}

interface Subtrees {
  readonly dnsNames: string[];
  readonly emails: string[];
  readonly ipRanges: IpRange[];
  readonly uriDomains: string[];
}

export interface NameConstraints {
  readonly permitted: Subtrees;
  readonly excluded: Subtrees;
}

/** Bounds the work a hostile CA can ask for with many names times many constraints (Go's default too). */
export const MAX_CONSTRAINT_COMPARISONS = 250_000;

const TAG_PERMITTED = 0xa0;
const TAG_EXCLUDED = 0xa1;
const TAG_EMAIL = 0x81;
const TAG_DNS = 0x82;
const TAG_URI = 0x86;
const TAG_IP = 0x87;

function ia5(content: Uint8Array, what: string): string {
  if (content.some((b) => b > 0x7f)) throw new DerError(`${what} constraint is not IA5String`);
  return Buffer.from(content).toString("latin1");
}

/** "foo.example.com" → ["com", "example", "foo"]; undefined for an absolute name, an empty label or a bad character. */
function reverseLabels(domain: string): string[] | undefined {
  if (domain === "") return [];
  const labels = domain.split(".").reverse();
  for (const label of labels) {
    if (label === "") return undefined;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      if (c < 33 || c > 126) return undefined;
    }
  }
  return labels;
}

/** Go's domainNameValid: no trailing dot, no empty label, printable ASCII; constraints may lead with a dot. */
function validDomainName(name: string, constraint: boolean): boolean {
  if (name === "") return true;
  if (name.endsWith(".")) return false;
  return reverseLabels(constraint && name.startsWith(".") ? name.slice(1) : name) !== undefined;
}

function isValidMask(mask: Uint8Array): boolean {
  let seenZero = false;
  for (const b of mask) {
    if (seenZero) {
      if (b !== 0) return false;
    } else if (b !== 0xff) {
      if (![0x00, 0x80, 0xc0, 0xe0, 0xf0, 0xf8, 0xfc, 0xfe].includes(b)) return false;
      seenZero = true;
    }
  }
  return true;
}

function isIpv4Mapped(address: Uint8Array): boolean {
  return address.length === 16 && address.subarray(0, 10).every((b) => b === 0) && address[10] === 0xff && address[11] === 0xff;
}

interface Mailbox {
  readonly local: string;
  readonly domain: string;
}

const ATEXT = /^[0-9A-Za-z!#$%&'*+\-/=?^_`{|}~.]$/;

function isQuotedText(c: number): boolean {
  // RFC 2821 qtext, plus the space RFC 3696's examples assume.
  return c === 11 || c === 12 || c === 32 || c === 33 || c === 127 || (c >= 1 && c <= 8) || (c >= 14 && c <= 31) ||
    (c >= 35 && c <= 91) || (c >= 93 && c <= 126);
}

/** An rfc822Name is an RFC 2821 Mailbox (RFC 5280 §4.2.1.6): a dot-atom or quoted local part, "@", a domain. */
function parseMailbox(text: string): Mailbox | undefined {
  let local = "";
  let i = 0;
  if (text.startsWith('"')) {
    i = 1;
    for (;;) {
      if (i >= text.length) return undefined;
      const c = text.charCodeAt(i++);
      if (c === 0x22) break;
      if (c === 0x5c) {
        const next = text.charCodeAt(i);
        if (!(next === 11 || next === 12 || (next >= 1 && next <= 9) || (next >= 14 && next <= 127))) return undefined;
        local += text[i++];
      } else if (isQuotedText(c)) {
        local += text[i - 1];
      } else {
        return undefined;
      }
    }
  } else {
    while (i < text.length) {
      if (text[i] === "\\") {
        // An escaped character outside quotes, as RFC 3696's examples use.
        if (++i >= text.length) return undefined;
      } else if (!ATEXT.test(text[i]!)) {
        break;
      }
      local += text[i++];
    }
    if (local === "" || local.startsWith(".") || local.endsWith(".") || local.includes("..")) return undefined;
  }
  if (text[i] !== "@") return undefined;
  const domain = text.slice(i + 1);
  return reverseLabels(domain) === undefined ? undefined : { local, domain };
}

function readSubtrees(content: Uint8Array): { subtrees: Subtrees; unhandled: boolean } {
  const subtrees: Subtrees = { dnsNames: [], emails: [], ipRanges: [], uriDomains: [] };
  let unhandled = false;
  for (const subtree of readChildren(content)) {
    if (subtree.tag !== TAG_SEQUENCE) throw new DerError("malformed GeneralSubtree");
    // minimum and maximum follow the base; RFC 5280 fixes them at 0 and absent, and Go ignores them.
    const [base] = readChildren(subtree.content);
    if (base === undefined) throw new DerError("malformed GeneralSubtree");
    switch (base.tag) {
      case TAG_DNS: {
        const domain = ia5(base.content, "dNSName");
        if (!validDomainName(domain, true)) throw new DerError(`failed to parse dNSName constraint "${domain}"`);
        subtrees.dnsNames.push(domain);
        break;
      }
      case TAG_IP: {
        const bytes = base.content;
        if (bytes.length !== 8 && bytes.length !== 32) throw new DerError(`IP constraint of length ${bytes.length}`);
        const half = bytes.length / 2;
        const range = { network: bytes.slice(0, half), mask: bytes.slice(half) };
        if (!isValidMask(range.mask)) throw new DerError("IP constraint with a non-contiguous mask");
        if (isIpv4Mapped(range.network)) throw new DerError("IP constraint with an IPv4-mapped IPv6 address");
        subtrees.ipRanges.push(range);
        break;
      }
      case TAG_EMAIL: {
        const constraint = ia5(base.content, "rfc822Name");
        const valid = constraint.includes("@") ? parseMailbox(constraint) !== undefined : validDomainName(constraint, true);
        if (!valid) throw new DerError(`failed to parse rfc822Name constraint "${constraint}"`);
        subtrees.emails.push(constraint);
        break;
      }
      case TAG_URI: {
        const domain = ia5(base.content, "URI");
        if (isIP(domain) !== 0) throw new DerError(`URI constraint "${domain}" is an IP address`);
        if (!validDomainName(domain, true)) throw new DerError(`failed to parse URI constraint "${domain}"`);
        subtrees.uriDomains.push(domain);
        break;
      }
      default:
        unhandled = true;
    }
  }
  return { subtrees, unhandled };
}

/**
 * Parses a nameConstraints extension value. `unhandled` is true when a subtree uses a name type this verifier does
 * not check (directoryName, otherName, ...). Throws DerError on anything malformed.
 */
export function parseNameConstraints(value: Uint8Array): { constraints: NameConstraints; unhandled: boolean } {
  const fields = readChildren(readElement(value, TAG_SEQUENCE).content);
  let permitted: Uint8Array | undefined;
  let excluded: Uint8Array | undefined;
  for (const field of fields) {
    if (field.tag === TAG_PERMITTED && permitted === undefined && excluded === undefined) permitted = field.content;
    else if (field.tag === TAG_EXCLUDED && excluded === undefined) excluded = field.content;
    else throw new DerError("malformed NameConstraints");
  }
  // RFC 5280: "either the permittedSubtrees field or the excludedSubtrees MUST be present".
  if ((permitted?.length ?? 0) === 0 && (excluded?.length ?? 0) === 0) throw new DerError("empty name constraints extension");
  const p = readSubtrees(permitted ?? new Uint8Array());
  const e = readSubtrees(excluded ?? new Uint8Array());
  return { constraints: { permitted: p.subtrees, excluded: e.subtrees }, unhandled: p.unhandled || e.unhandled };
}

/** A name that cannot be compared with a constraint; the certificate is refused, as RFC 5280 requires. */
class Unmatchable extends Error {}

function matchDomain(domain: string, constraint: string, excluded: boolean): boolean {
  // An empty constraint matches everything (NSS and Go agree; RFC 5280 is silent).
  if (constraint === "") return true;
  let domainLabels = reverseLabels(domain);
  if (domainLabels === undefined) throw new Unmatchable(`cannot parse domain "${domain}"`);
  const subdomainsOnly = constraint.startsWith(".");
  let constraintLabels = reverseLabels(subdomainsOnly ? constraint.slice(1) : constraint);
  if (constraintLabels === undefined) throw new Unmatchable(`cannot parse domain "${constraint}"`);
  if (domainLabels.length < constraintLabels.length || (subdomainsOnly && domainLabels.length === constraintLabels.length)) {
    return false;
  }
  // "*.example.com" covers "api.example.com": an excluded "api.example.com" must exclude the wildcard too.
  if (excluded && domain.startsWith("*") && domainLabels.length > 1 && constraintLabels.length > 0) {
    domainLabels = domainLabels.slice(0, -1);
    constraintLabels = constraintLabels.slice(0, -1);
  }
  return constraintLabels.every((label, i) => label.toLowerCase() === domainLabels[i]!.toLowerCase());
}

/** RFC 5280: a URI is constrained by its host, which must be a domain name (not empty, not an IP address). */
function uriHost(uri: string): string {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(uri);
  const authority = scheme === null ? "" : uri.slice(scheme[0].length).split(/[/?#]/, 1)[0]!;
  let host = authority.slice(authority.lastIndexOf("@") + 1);
  if (host.includes(":") && !host.endsWith("]")) {
    host = host.slice(0, host.lastIndexOf(":"));
    if (host.includes(":") && !(host.startsWith("[") && host.endsWith("]"))) {
      throw new Unmatchable(`URI "${uri}" has a host that cannot be parsed`);
    }
  }
  if (host === "") throw new Unmatchable(`URI with empty host ("${uri}") cannot be matched against constraints`);
  if ((host.startsWith("[") && host.endsWith("]")) || isIP(host) !== 0) {
    throw new Unmatchable(`URI with IP ("${uri}") cannot be matched against constraints`);
  }
  return host;
}

function matchEmail(mailbox: Mailbox, constraint: string, excluded: boolean): boolean {
  // A constraint with an "@" names one mailbox; otherwise it constrains the mailbox's domain.
  if (constraint.includes("@")) {
    const exact = parseMailbox(constraint);
    if (exact === undefined) throw new Unmatchable(`cannot parse constraint "${constraint}"`);
    return mailbox.local === exact.local && mailbox.domain.toLowerCase() === exact.domain.toLowerCase();
  }
  return matchDomain(mailbox.domain, constraint, excluded);
}

function matchIp(address: Uint8Array, range: IpRange): boolean {
  if (address.length !== range.network.length) return false;
  return address.every((b, i) => (b & range.mask[i]!) === (range.network[i]! & range.mask[i]!));
}

function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join(".");
  const groups: string[] = [];
  for (let i = 0; i < bytes.length; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(":");
}

function formatRange(range: IpRange): string {
  const prefix = range.mask.reduce((n, b) => n + b.toString(2).replaceAll("0", "").length, 0);
  return `${formatIp(range.network)}/${prefix}`;
}

/** Checks one name against the excluded subtrees, then the permitted ones; returns the violation, if any. */
function checkName<C>(
  count: { value: number },
  type: string,
  name: string,
  excluded: readonly C[],
  permitted: readonly C[],
  match: (constraint: C, excluded: boolean) => boolean,
  show: (constraint: C) => string = String,
): string | undefined {
  try {
    count.value += excluded.length;
    if (count.value > MAX_CONSTRAINT_COMPARISONS) return `more than ${MAX_CONSTRAINT_COMPARISONS} name constraint comparisons`;
    const hit = excluded.find((constraint) => match(constraint, true));
    if (hit !== undefined) return `${type} "${name}" is excluded by constraint "${show(hit)}"`;
    count.value += permitted.length;
    if (count.value > MAX_CONSTRAINT_COMPARISONS) return `more than ${MAX_CONSTRAINT_COMPARISONS} name constraint comparisons`;
    // Permitted subtrees of one type say nothing about names of another type.
    if (permitted.length === 0 || permitted.some((constraint) => match(constraint, false))) return undefined;
    return `${type} "${name}" is not permitted by any constraint`;
  } catch (error) {
    if (error instanceof Unmatchable) return error.message;
    throw error;
  }
}

/**
 * The first name, among the subjectAltNames of every certificate below the constraining CA, that its constraints
 * refuse — described as Go's crypto/x509 describes it — or undefined when all are permitted.
 */
export function nameConstraintViolation(constraints: NameConstraints, below: readonly SubjectAltNames[]): string | undefined {
  const { permitted, excluded } = constraints;
  const count = { value: 0 };
  for (const names of below) {
    for (const email of names.emails) {
      const mailbox = parseMailbox(email);
      if (mailbox === undefined) return `cannot parse rfc822Name "${email}"`;
      const violation = checkName(count, "email address", email, excluded.emails, permitted.emails,
        (constraint, isExcluded) => matchEmail(mailbox, constraint, isExcluded));
      if (violation !== undefined) return violation;
    }
    for (const dns of names.dnsNames) {
      if (!validDomainName(dns, false)) return `cannot parse dnsName "${dns}"`;
      const violation = checkName(count, "DNS name", dns, excluded.dnsNames, permitted.dnsNames,
        (constraint, isExcluded) => matchDomain(dns, constraint, isExcluded));
      if (violation !== undefined) return violation;
    }
    for (const uri of names.uris) {
      const violation = checkName(count, "URI", uri, excluded.uriDomains, permitted.uriDomains,
        (constraint, isExcluded) => matchDomain(uriHost(uri), constraint, isExcluded));
      if (violation !== undefined) return violation;
    }
    for (const ip of names.ipAddresses) {
      if (ip.length !== 4 && ip.length !== 16) return `IP SAN of length ${ip.length} cannot be parsed`;
      const violation = checkName(count, "IP address", formatIp(ip), excluded.ipRanges, permitted.ipRanges,
        (range) => matchIp(ip, range), formatRange);
      if (violation !== undefined) return violation;
    }
  }
  return undefined;
}
