import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { X509SvidError, XfccError, peerCertificateChain, verifyX509Svid, xfccIdentity, type TrustBundleSet, type TrustedPeers } from "../identity/index.ts";

export type PeerIdentity =
  /** `serial` is null when the identity came from XFCC (the sidecar forwards the URI, not the certificate). */
  | { ok: true; principal: string; trustDomain: string; serial: string | null; notAfter: number }
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

/**
 * Sidecar mode: the caller's identity from the x-forwarded-client-cert header the local Envoy set after verifying the
 * caller's certificate. Only a trusted peer (the sidecar) may assert it; a connection from anywhere else is refused
 * whether or not it carries the header. A Unix socket's peer is trusted by the socket's file permissions.
 */
export function authenticateForwarded(req: IncomingMessage, peers: TrustedPeers, bundles: TrustBundleSet): PeerIdentity {
  const socket = req.socket;
  if (socket.remoteAddress !== undefined && !peers.has(socket.remoteAddress)) {
    return { ok: false, check: "untrusted-peer", message: `${socket.remoteAddress} is not a trusted sidecar; identities are accepted only from identity.trustedPeers` };
  }
  const header = req.headers["x-forwarded-client-cert"];
  try {
    const id = xfccIdentity(Array.isArray(header) ? header.join(",") : header);
    if (bundles.get(id.trustDomain) === undefined) {
      return { ok: false, check: "unknown-trust-domain", message: `trust domain ${id.trustDomain} is not one of this gateway's trustBundles` };
    }
    return { ok: true, principal: id.uri, trustDomain: id.trustDomain, serial: null, notAfter: Number.POSITIVE_INFINITY };
  } catch (err) {
    if (err instanceof XfccError) return { ok: false, check: `xfcc-${err.check}`, message: err.message };
    return { ok: false, check: "xfcc-malformed", message: "x-forwarded-client-cert could not be read" };
  }
}
