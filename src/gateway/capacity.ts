import type { RevocationList } from "../bundle/index.ts";

/**
 * How much of the gateway one caller may hold: requests in flight and open connections, per caller and in all. A
 * caller with a valid certificate — even one no rule allows — must not be able to hold every descriptor or buffer.
 */
export interface CapacityLimits {
  maxInflight: number;
  maxInflightPerPrincipal: number;
  maxConnectionsPerPrincipal: number;
}

/** A request in flight, as the gateway can end it from outside: on revocation, or when its caller is no longer trusted. */
export interface OpenRequest {
  readonly principal: string;
  readonly serial: string | null;
  /** The connection it came on. */
  readonly socket: object;
  /** Ends the request: a stream gets a final error event, a request not yet answered the error itself. */
  cut(reason: CutReason, message: string): void;
}

/** Why a request in flight was ended from outside: its caller was revoked, or its certificate no longer verifies. */
export type CutReason = "revoked" | "untrusted";

/** The requests in flight, by caller. */
export class InFlight {
  readonly #byPrincipal = new Map<string, Set<OpenRequest>>();
  #total = 0;

  get total(): number {
    return this.#total;
  }

  /** Registers `request` unless a limit is reached: "caller" (429) or "total" (503). */
  enter(request: OpenRequest, limits: CapacityLimits): "ok" | "caller" | "total" {
    if (this.#total >= limits.maxInflight) return "total";
    let mine = this.#byPrincipal.get(request.principal);
    if (mine !== undefined && mine.size >= limits.maxInflightPerPrincipal) return "caller";
    if (mine === undefined) this.#byPrincipal.set(request.principal, (mine = new Set()));
    mine.add(request);
    this.#total++;
    return "ok";
  }

  leave(request: OpenRequest): void {
    const mine = this.#byPrincipal.get(request.principal);
    if (mine === undefined || !mine.delete(request)) return;
    this.#total--;
    if (mine.size === 0) this.#byPrincipal.delete(request.principal);
  }

  /** Cuts every request whose caller the list revokes; returns how many. */
  cutRevoked(revocations: RevocationList): number {
    let cut = 0;
    for (const [principal, requests] of this.#byPrincipal) {
      for (const r of [...requests]) {
        const revoked = revocations.isRevoked(r.serial === null ? { spiffeId: principal } : { spiffeId: principal, serial: r.serial });
        if (revoked === null) continue;
        const what = revoked.kind === "serial" ? `certificate serial ${r.serial}` : principal;
        r.cut("revoked", `caller identity rejected: ${what} was revoked at ${revoked.revokedAt}; the request was ended`);
        cut++;
      }
    }
    return cut;
  }

  /** Cuts every request that came on `socket` (its client certificate no longer verifies); returns how many. */
  cutConnection(principal: string, socket: object, message: string): number {
    let cut = 0;
    for (const r of [...(this.#byPrincipal.get(principal) ?? [])]) {
      if (r.socket !== socket) continue;
      r.cut("untrusted", message);
      cut++;
    }
    return cut;
  }
}

/**
 * Open connections to the main listener: in all (the listener itself refuses beyond `maxTotal`) and per caller.
 * No caller may hold more than a quarter of them, whatever `maxPerPrincipal` says, so that one caller cannot take
 * the listener from the others when the total had to be lowered to the process's descriptor limit.
 */
export class ConnectionTally {
  readonly maxTotal: number;
  readonly maxPerPrincipal: number;
  readonly #counts = new Map<string, number>();
  #total = 0;

  constructor(maxTotal: number, maxPerPrincipal: number) {
    this.maxTotal = maxTotal;
    this.maxPerPrincipal = Math.max(1, Math.min(maxPerPrincipal, Math.floor(maxTotal / 4)));
  }

  /** Connections open now, whoever holds them (counted from accept, handshake included). */
  get total(): number {
    return this.#total;
  }

  accepted(): void {
    this.#total++;
  }

  closed(): void {
    if (this.#total > 0) this.#total--;
  }

  /**
   * Counts one more verified connection of `principal`: "ok", or refused — "answer" when the listener has room to
   * keep the connection long enough to tell the caller why (its first request gets a 429), "close" under pressure.
   */
  open(principal: string): "ok" | "answer" | "close" {
    const n = this.#counts.get(principal) ?? 0;
    if (n >= this.maxPerPrincipal) return this.#total * 2 >= this.maxTotal ? "close" : "answer";
    this.#counts.set(principal, n + 1);
    return "ok";
  }

  release(principal: string): void {
    const n = this.#counts.get(principal) ?? 0;
    if (n <= 1) this.#counts.delete(principal);
    else this.#counts.set(principal, n - 1);
  }

  count(principal: string): number {
    return this.#counts.get(principal) ?? 0;
  }
}
