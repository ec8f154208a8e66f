import type { TLSSocket } from "node:tls";
import { X509SvidError } from "./errors.ts";
import { peerCertificateChain } from "./tls-peer.ts";
import type { TrustBundleSet } from "./trust-bundle.ts";
import { verifyX509Svid, type VerifiedSvid } from "./x509-svid.ts";

/** What a connection's client certificate proved: its SVID, a refusal naming the failed check, or null when none was presented. */
export type PeerVerdict =
  | { readonly ok: true; readonly svid: VerifiedSvid }
  | { readonly ok: false; readonly check: string; readonly message: string }
  | null;

/**
 * Verifies each connection's client certificate as an X.509-SVID once: the handshake does not change while the
 * connection lives. Every later call re-checks the one thing that does change, the time — so a request on a
 * kept-alive connection after the SVID's notAfter is refused like a new handshake would be.
 */
export class PeerVerdicts {
  /** Each connection's verdict, with the trust bundles it was reached under. */
  readonly #verdicts = new WeakMap<TLSSocket, { bundles: TrustBundleSet; verdict: PeerVerdict }>();

  /**
   * The connection's verdict. Trust bundles are replaced as a whole when they rotate: an acceptance reached under
   * other bundles is reached again, so a connection whose CA was removed is refused on its next request. A refusal
   * stands for the connection's life.
   */
  verdict(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerVerdict {
    let entry = this.#verdicts.get(socket);
    if (entry === undefined || (entry.bundles !== bundles && entry.verdict?.ok === true)) {
      entry = { bundles, verdict: verifyPeer(socket, bundles, now) };
      this.#verdicts.set(socket, entry);
    }
    const verdict = entry.verdict;
    if (verdict?.ok === true && now.getTime() > verdict.svid.notAfter.getTime()) {
      entry.verdict = {
        ok: false,
        check: "expired",
        message: `x509svid: leaf certificate expired at ${verdict.svid.notAfter.toISOString()}, while its connection was open`,
      };
    }
    return entry.verdict;
  }
}

function verifyPeer(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerVerdict {
  try {
    const chain = peerCertificateChain(socket);
    if (chain.length === 0) return null;
    return { ok: true, svid: verifyX509Svid(chain, bundles, now) };
  } catch (error) {
    if (error instanceof X509SvidError) return { ok: false, check: error.check, message: error.message };
    return { ok: false, check: "malformed", message: "client certificate could not be parsed" };
  }
}
