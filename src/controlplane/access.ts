import { createHash, timingSafeEqual } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { normalizeSerial } from "../bundle/index.ts";
import { PeerVerdicts, type TrustBundleSet } from "../identity/index.ts";
import { compileStringMatcher, type StringMatcher } from "../policy/match.ts";
import { ApiError } from "./errors.ts";

/** Who may call a route: anyone (health), a node of a group, an operator, or either. */
export type Access = "public" | "node" | "operator" | "any";

export type Caller =
  | { kind: "public" }
  | { kind: "node"; id: string; group: string }
  | { kind: "operator"; id: string };

/** The client certificate's verdict: null when none was presented. */
export type PeerIdentity =
  | { ok: true; principal: string; serial: string; notAfter: number }
  | { ok: false; check: string; message: string }
  | null;

const verdicts = new PeerVerdicts();

/**
 * Verifies the connection's client certificate as an X.509-SVID once per connection (the handshake does not change
 * mid-connection); later requests reuse the verdict, re-checking only the expiry.
 */
export function authenticatePeer(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerIdentity {
  const verdict = verdicts.verdict(socket, bundles, now);
  if (verdict === null || !verdict.ok) return verdict;
  const { id, serialNumber, notAfter } = verdict.svid;
  return { ok: true, principal: id.uri, serial: normalizeSerial(serialNumber), notAfter: notAfter.getTime() };
}

/** The operator token, kept only as its digest: comparing equal-length digests is constant-time whatever is sent. */
export class OperatorToken {
  readonly #digest: Buffer;

  constructor(token: string) {
    this.#digest = createHash("sha256").update(token).digest();
  }

  matches(candidate: string): boolean {
    return timingSafeEqual(this.#digest, createHash("sha256").update(candidate).digest());
  }
}

/** Revoked SPIFFE IDs and serials, consulted on every request: a revocation takes effect on open connections too. */
export class RevokedSet {
  readonly #ids = new Set<string>();
  readonly #serials = new Set<string>();

  add(r: { kind: "spiffe-id" | "serial"; value: string }): void {
    if (r.kind === "spiffe-id") this.#ids.add(r.value);
    else this.#serials.add(normalizeSerial(r.value));
  }

  has(principal: string, serial: string): boolean {
    return this.#ids.has(principal) || this.#serials.has(serial);
  }
}

/** Node → group, first match wins, as in the config. */
export class GroupTable {
  readonly #groups: { name: string; matcher: StringMatcher }[];

  constructor(groups: readonly { name: string; principals: readonly string[] }[]) {
    this.#groups = groups.map((g) => ({ name: g.name, matcher: compileStringMatcher(g.principals) }));
  }

  groupOf(principal: string): string | null {
    return this.#groups.find((g) => g.matcher.test(principal))?.name ?? null;
  }

  has(name: string): boolean {
    return this.#groups.some((g) => g.name === name);
  }

  names(): string[] {
    return this.#groups.map((g) => g.name);
  }
}

export interface AccessRules {
  groups: GroupTable;
  operators: StringMatcher;
  token: OperatorToken | null;
  /** Whether the control plane has revoked this SVID (by SPIFFE ID or certificate serial). */
  isRevoked(principal: string, serial: string): boolean;
}

const BEARER = /^Bearer +(\S+) *$/i;

function unauthenticated(message: string): ApiError {
  return new ApiError(401, "unauthenticated", message, { headers: { "www-authenticate": 'Bearer realm="edgeward"' } });
}

/**
 * Decides who the caller is for a route, failing closed: a certificate that is presented must verify, an
 * Authorization header that is sent must hold the operator token, and a revoked SVID is refused everywhere.
 * 401 when the caller is not authenticated, 403 when it is but may not call the route.
 */
export function authorize(access: Access, peer: PeerIdentity, authorization: string | undefined, rules: AccessRules): Caller {
  if (access === "public") return { kind: "public" };
  if (peer !== null && !peer.ok) throw unauthenticated(`client certificate refused (${peer.check}): ${peer.message}`);
  if (peer !== null && rules.isRevoked(peer.principal, peer.serial)) {
    throw new ApiError(403, "revoked", `${peer.principal} (certificate serial ${peer.serial}) has been revoked`);
  }
  let tokenOperator = false;
  if (authorization !== undefined) {
    const token = BEARER.exec(authorization)?.[1];
    if (token === undefined || rules.token === null || !rules.token.matches(token)) throw unauthenticated("the bearer token is not valid");
    tokenOperator = true;
  }
  const group = peer === null ? null : rules.groups.groupOf(peer.principal);
  const operator = tokenOperator || (peer !== null && rules.operators.test(peer.principal));
  const asOperator = (): Caller => ({ kind: "operator", id: tokenOperator ? "token" : peer!.principal });

  if (access === "node") {
    if (peer === null) throw unauthenticated("a node certificate (X.509-SVID) is required");
    if (group === null) throw new ApiError(403, "forbidden", `${peer.principal} is not in any node group`);
    return { kind: "node", id: peer.principal, group };
  }
  if (access === "operator") {
    if (operator) return asOperator();
    if (peer === null) throw unauthenticated("an operator certificate or bearer token is required");
    throw new ApiError(403, "forbidden", `${peer.principal} is not an operator`);
  }
  if (operator) return asOperator();
  if (peer === null) throw unauthenticated("a client certificate or bearer token is required");
  if (group !== null) return { kind: "node", id: peer.principal, group };
  throw new ApiError(403, "forbidden", `${peer.principal} is neither an operator nor in a node group`);
}
