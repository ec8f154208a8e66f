import { SpiffeIdError } from "./errors.ts";

export { SpiffeIdError };

export interface SpiffeId {
  readonly trustDomain: string;
  /** "" or "/seg/seg…" */
  readonly path: string;
  /** "spiffe://td/path" */
  readonly uri: string;
}

const SCHEME_PREFIX = "spiffe://";
/** The SPIFFE-ID spec caps the URI at 2048 bytes; valid IDs are ASCII, so characters = bytes. */
export const MAX_SPIFFE_ID_LENGTH = 2048;
/** SPIFFE-ID §2.3: the trust domain is a URI host, which RFC 3986 caps at 255 characters. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

const TRUST_DOMAIN_TOO_LONG = `trust domain exceeds ${MAX_TRUST_DOMAIN_LENGTH} bytes`;

function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || c === 0x2e || c === 0x5f // - . _
  );
}

function isPathSegmentChar(c: number): boolean {
  return isTrustDomainChar(c) || (c >= 0x41 && c <= 0x5a); // also A-Z
}

/** Checks a trust domain name (as found in a SPIFFE ID or a bundle's key). */
export function validateTrustDomain(name: string): void {
  if (name === "") throw new SpiffeIdError("trust-domain-missing", "trust domain is missing");
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) throw new SpiffeIdError("trust-domain-too-long", TRUST_DOMAIN_TOO_LONG);
  for (let i = 0; i < name.length; i++) {
    if (!isTrustDomainChar(name.charCodeAt(i))) {
      throw new SpiffeIdError(
        "trust-domain-char",
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
      );
    }
  }
}

function validatePath(path: string): void {
  if (path === "") return;
  if (path[0] !== "/") throw new SpiffeIdError("path-leading-slash", "path must have a leading slash");
  let segmentStart = 0;
  for (let i = 0; i <= path.length; i++) {
    const atEnd = i === path.length;
    if (atEnd || path[i] === "/") {
      const segment = path.slice(segmentStart, i);
      if (segment === "/") {
        if (atEnd) throw new SpiffeIdError("path-trailing-slash", "path cannot have a trailing slash");
        throw new SpiffeIdError("path-empty-segment", "path cannot contain empty segments");
      }
      if (segment === "/." || segment === "/..") {
        throw new SpiffeIdError("path-dot-segment", "path cannot contain dot segments");
      }
      segmentStart = i;
      continue;
    }
    if (!isPathSegmentChar(path.charCodeAt(i))) {
      throw new SpiffeIdError(
        "path-char",
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
      );
    }
  }
}

/** Parses a SPIFFE ID exactly as the SPIFFE-ID specification (and go-spiffe v2) allow. */
export function parseSpiffeId(text: string): SpiffeId {
  if (typeof text !== "string" || text === "") throw new SpiffeIdError("empty", "cannot be empty");
  if (text.length > MAX_SPIFFE_ID_LENGTH) {
    throw new SpiffeIdError("too-long", `SPIFFE ID exceeds ${MAX_SPIFFE_ID_LENGTH} bytes`);
  }
  if (!text.startsWith(SCHEME_PREFIX)) throw new SpiffeIdError("scheme", "scheme is missing or invalid");
  let pathIndex = SCHEME_PREFIX.length;
  for (; pathIndex < text.length; pathIndex++) {
    const c = text.charCodeAt(pathIndex);
    if (c === 0x2f) break;
    if (!isTrustDomainChar(c)) {
      throw new SpiffeIdError(
        "trust-domain-char",
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
      );
    }
  }
  if (pathIndex === SCHEME_PREFIX.length) throw new SpiffeIdError("trust-domain-missing", "trust domain is missing");
  if (pathIndex - SCHEME_PREFIX.length > MAX_TRUST_DOMAIN_LENGTH) {
    throw new SpiffeIdError("trust-domain-too-long", TRUST_DOMAIN_TOO_LONG);
  }
  const path = text.slice(pathIndex);
  validatePath(path);
  return Object.freeze({ trustDomain: text.slice(SCHEME_PREFIX.length, pathIndex), path, uri: text });
}

/** Istio's principal form: the SPIFFE ID without its scheme ("td/ns/x/sa/y"). */
export function istioPrincipal(id: SpiffeId): string {
  return id.uri.slice(SCHEME_PREFIX.length);
}
