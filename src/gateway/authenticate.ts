import type { TLSSocket } from "node:tls";
import { X509SvidError, peerCertificateChain, verifyX509Svid, type TrustBundleSet } from "../identity/index.ts";

export type PeerIdentity =
  | { ok: true; principal: string; trustDomain: string; serial: string; notAfter: number }
  | { ok: false; check: string; message: string };

const cache = new WeakMap<TLSSocket, PeerIdentity>();

/**
 * Verifies the connection's client certificate as an X.509-SVID once per connection; later requests on the same
 * connection reuse the verdict, re-checking only the expiry.
 */
export function authenticatePeer(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerIdentity {
  let identity = cache.get(socket);
  if (identity === undefined) {
    identity = verifyPeer(socket, bundles, now);
    cache.set(socket, identity);
  }
  if (identity.ok && now.getTime() > identity.notAfter) {
    identity = { ok: false, check: "expired", message: "client certificate expired during the connection" };
    cache.set(socket, identity);
  }
  return identity;
}

function verifyPeer(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerIdentity {
  const chain = peerCertificateChain(socket);
  if (chain.length === 0) return { ok: false, check: "no-certificate", message: "no client certificate presented" };
  try {
    const svid = verifyX509Svid(chain, bundles, now);
    return { ok: true, principal: svid.id.uri, trustDomain: svid.id.trustDomain, serial: svid.serialNumber, notAfter: svid.notAfter.getTime() };
  } catch (err) {
    if (err instanceof X509SvidError) return { ok: false, check: err.check, message: err.message };
    return { ok: false, check: "malformed", message: "client certificate could not be parsed" };
  }
}
