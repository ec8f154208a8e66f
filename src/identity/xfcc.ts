import { BlockList, isIP } from "node:net";
import { parseSpiffeId, SpiffeIdError, type SpiffeId } from "./spiffe-id.ts";

/**
 * Envoy's `x-forwarded-client-cert` (XFCC) header, as documented in Envoy's "HTTP header manipulation" page:
 *
 *   XFCC     = element *( "," element )          one element per proxy hop; a proxy APPENDS its own at the end
 *   element  = pair *( ";" pair )
 *   pair     = key "=" value                      keys case-insensitive: By, Hash, Cert, Chain, Subject, URI, DNS
 *   value    = quoted / *( any char but , ; " )   a value holding , ; or = is double-quoted, `"` inside as `\"`
 *
 * URI and DNS may repeat within an element (one pair per SAN); the others may appear once. Envoy writes `URI=`
 * with an empty value for a certificate without a URI SAN. Inside quotes, `\"` is a quote and `\\` a backslash;
 * a backslash before anything else is kept as it is, so RFC 2253 subjects (`CN=a\,b`) pass through unchanged.
 * Optional whitespace is allowed around separators (Node joins repeated headers with ", ").
 *
 * Which element names the caller: with `forward_client_cert_details: APPEND_FORWARD` (Istio's sidecars) or
 * `SANITIZE_SET`, the sidecar that terminated the caller's mTLS writes the details of THAT connection's client
 * certificate as the LAST element; everything before it came from earlier hops or from the caller itself and is
 * not trusted. So the caller is the single `spiffe://` URI of the last element.
 */

export type XfccKey = "By" | "Hash" | "Cert" | "Chain" | "Subject" | "URI" | "DNS";

/** One proxy hop's element. */
export interface XfccElement {
  /** URI SAN of the proxy that added the element (its own identity). */
  by?: string;
  /** SHA-256 of the client certificate, hex. */
  hash?: string;
  /** The client certificate, URL-encoded PEM. */
  cert?: string;
  /** The client certificate chain, URL-encoded PEM. */
  chain?: string;
  subject?: string;
  /** URI SANs of the client certificate, in header order. */
  uri: string[];
  /** DNS SANs of the client certificate, in header order. */
  dns: string[];
}

/** The header's bounds: Envoy's own header limit is far larger, but an identity header has no business being big. */
export const XFCC_LIMITS = Object.freeze({ maxBytes: 16 * 1024, maxElements: 16, maxPairsPerElement: 32 });

/** The XFCC header could not be used; `check` is a short stable slug naming the failed rule. */
export class XfccError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`xfcc: ${message}`);
    this.name = "XfccError";
    this.check = check;
  }
}

const KEYS: ReadonlyMap<string, XfccKey> = new Map(
  (["By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS"] as const).map((k) => [k.toLowerCase(), k]),
);
const SINGLE: Readonly<Record<Exclude<XfccKey, "URI" | "DNS">, "by" | "hash" | "cert" | "chain" | "subject">> = {
  By: "by", Hash: "hash", Cert: "cert", Chain: "chain", Subject: "subject",
};

const COMMA = 0x2c;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const isWhitespace = (c: number) => c === 0x20 || c === 0x09;
const isControl = (c: number) => c < 0x20 || c === 0x7f;
const isKeyChar = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

/** Parses the header into its elements, first hop first. Throws XfccError (and nothing else) on any defect. */
export function parseXfcc(header: string): XfccElement[] {
  if (typeof header !== "string") throw new XfccError("missing", "no x-forwarded-client-cert header");
  if (header.length > XFCC_LIMITS.maxBytes) {
    throw new XfccError("too-large", `header is longer than ${XFCC_LIMITS.maxBytes} bytes`);
  }
  return new Parser(header).elements();
}

class Parser {
  readonly #s: string;
  #i = 0;

  constructor(s: string) {
    this.#s = s;
  }

  elements(): XfccElement[] {
    const out: XfccElement[] = [];
    for (;;) {
      if (out.length === XFCC_LIMITS.maxElements) {
        throw new XfccError("too-many-elements", `more than ${XFCC_LIMITS.maxElements} elements`);
      }
      out.push(this.#element(out.length + 1));
      if (this.#i === this.#s.length) return out;
      this.#i++; // the "," that ended the element
    }
  }

  /** One element, up to (not past) the "," that ends it or the end of the header. */
  #element(n: number): XfccElement {
    const element: XfccElement = { uri: [], dns: [] };
    for (let pairs = 1; ; pairs++) {
      if (pairs > XFCC_LIMITS.maxPairsPerElement) {
        throw new XfccError("too-many-pairs", `element ${n} has more than ${XFCC_LIMITS.maxPairsPerElement} key=value pairs`);
      }
      this.#skipWhitespace();
      const key = this.#key(n);
      const value = this.#value(n, key);
      if (key === "URI") element.uri.push(value);
      else if (key === "DNS") element.dns.push(value);
      else {
        const field = SINGLE[key];
        if (element[field] !== undefined) throw new XfccError("duplicate-key", `element ${n} has more than one ${key}`);
        element[field] = value;
      }
      this.#skipWhitespace();
      if (this.#i === this.#s.length) return element;
      const c = this.#s.charCodeAt(this.#i);
      if (c === COMMA) return element;
      if (c !== SEMICOLON) throw this.#unexpected(n);
      this.#i++;
    }
  }

  #key(n: number): XfccKey {
    const s = this.#s;
    const start = this.#i;
    while (this.#i < s.length && isKeyChar(s.charCodeAt(this.#i))) this.#i++;
    if (this.#i === start) {
      if (this.#i === s.length || s.charCodeAt(this.#i) === COMMA || s.charCodeAt(this.#i) === SEMICOLON) {
        throw new XfccError("empty-element", `element ${n} has an empty key=value pair (a stray or trailing separator)`);
      }
      throw this.#unexpected(n);
    }
    const name = s.slice(start, this.#i);
    const key = KEYS.get(name.toLowerCase());
    if (key === undefined) {
      throw new XfccError("unknown-key", `element ${n} has unknown key ${JSON.stringify(name)}; expected By, Hash, Cert, Chain, Subject, URI or DNS`);
    }
    if (this.#i === s.length || s.charCodeAt(this.#i) !== EQUALS) throw new XfccError("missing-equals", `element ${n}: ${key} is not followed by "="`);
    this.#i++;
    return key;
  }

  #value(n: number, key: XfccKey): string {
    const s = this.#s;
    if (this.#i < s.length && s.charCodeAt(this.#i) === QUOTE) return this.#quoted(n, key);
    const start = this.#i;
    let end = start;
    for (; this.#i < s.length; this.#i++) {
      const c = s.charCodeAt(this.#i);
      if (c === COMMA || c === SEMICOLON) break;
      if (c === QUOTE) throw new XfccError("quote-in-value", `element ${n}: ${key} has a double quote inside an unquoted value`);
      if (isWhitespace(c)) continue;
      if (isControl(c)) throw new XfccError("control-character", `element ${n}: ${key} contains a control character`);
      end = this.#i + 1;
    }
    return s.slice(start, end);
  }

  #quoted(n: number, key: XfccKey): string {
    const s = this.#s;
    this.#i++; // the opening quote
    let out = "";
    let run = this.#i;
    for (;;) {
      if (this.#i >= s.length) throw new XfccError("unterminated-quote", `element ${n}: ${key} has an unterminated quoted value`);
      const c = s.charCodeAt(this.#i);
      if (c === QUOTE) {
        out += s.slice(run, this.#i);
        this.#i++;
        return out;
      }
      if (c === BACKSLASH && this.#i + 1 < s.length) {
        const next = s.charCodeAt(this.#i + 1);
        if (next === QUOTE || next === BACKSLASH) {
          out += s.slice(run, this.#i);
          this.#i += 2;
          run = this.#i - 1; // keep the escaped character
          continue;
        }
      }
      if (isControl(c) && c !== 0x09) throw new XfccError("control-character", `element ${n}: ${key} contains a control character`);
      this.#i++;
    }
  }

  #skipWhitespace(): void {
    while (this.#i < this.#s.length && isWhitespace(this.#s.charCodeAt(this.#i))) this.#i++;
  }

  #unexpected(n: number): XfccError {
    const c = this.#s.charCodeAt(this.#i);
    const what = isControl(c) ? "a control character" : JSON.stringify(this.#s[this.#i]);
    return new XfccError(isControl(c) ? "control-character" : "syntax", `element ${n}: unexpected ${what} at offset ${this.#i}`);
  }
}

/**
 * The caller's SPIFFE ID: the single `spiffe://` URI of the header's LAST element — the one the sidecar appended
 * for the connection it terminated (see above). Refuses a missing or malformed header, a last element with no
 * `spiffe://` URI or with several (an X.509-SVID has exactly one), and an invalid SPIFFE ID.
 */
export function xfccIdentity(header: string | undefined): SpiffeId {
  if (header === undefined || header.trim() === "") {
    throw new XfccError("missing", "no x-forwarded-client-cert header; the sidecar must forward the client certificate's URI (forward_client_cert_details APPEND_FORWARD or SANITIZE_SET)");
  }
  const elements = parseXfcc(header);
  const last = elements[elements.length - 1]!;
  const ids = last.uri.filter((u) => u.slice(0, 9).toLowerCase() === "spiffe://");
  if (ids.length === 0) {
    throw new XfccError("no-identity", "the last element (the sidecar's peer) has no spiffe:// URI; the caller presented no SPIFFE identity");
  }
  if (ids.length > 1) {
    throw new XfccError("several-identities", `the last element carries ${ids.length} spiffe:// URIs; a caller must have exactly one identity`);
  }
  try {
    return parseSpiffeId(ids[0]!);
  } catch (err) {
    if (err instanceof SpiffeIdError) throw new XfccError("invalid-spiffe-id", `the caller's URI is not a valid SPIFFE ID (${err.message})`);
    throw err;
  }
}

/** The peers allowed to set XFCC (the local sidecar): exact addresses or CIDR ranges, IPv4-mapped IPv6 included. */
export interface TrustedPeers {
  /** Whether a connection from `remoteAddress` may assert an identity with XFCC; undefined (no address) never may. */
  has(remoteAddress: string | undefined): boolean;
  readonly entries: readonly string[];
}

/** Compiles `identity.trustedPeers` ("127.0.0.1", "::1", "10.0.0.0/8"…); a malformed entry throws XfccError "trusted-peer". */
export function trustedPeers(entries: readonly string[]): TrustedPeers {
  const list = new BlockList();
  for (const entry of entries) {
    const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(entry);
    const family = m === null ? 0 : isIP(m[1]!);
    const prefix = m?.[2] === undefined ? null : Number(m[2]);
    if (family === 0 || (prefix !== null && prefix > (family === 6 ? 128 : 32))) {
      throw new XfccError("trusted-peer", `trusted peer ${JSON.stringify(entry)} is not an IP address or CIDR range`);
    }
    const type = family === 6 ? "ipv6" : "ipv4";
    if (prefix === null) list.addAddress(m![1]!, type);
    else list.addSubnet(m![1]!, prefix, type);
  }
  return {
    entries: Object.freeze([...entries]),
    has(remoteAddress) {
      if (remoteAddress === undefined) return false;
      const family = isIP(remoteAddress);
      if (family === 0) return false;
      return list.check(remoteAddress, family === 6 ? "ipv6" : "ipv4");
    },
  };
}
