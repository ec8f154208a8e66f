import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { PeerVerdicts, XfccError, xfccIdentity, type TrustBundleSet, type TrustedPeers } from "../identity/index.ts";

export type PeerIdentity =
  /** `serial` is null when the identity came from XFCC (the sidecar forwards the URI, not the certificate). */
  | { ok: true; principal: string; trustDomain: string; serial: string | null; notAfter: number }
  | { ok: false; check: string; message: string };

/**
 * The server sees an empty Certificate message, nothing more. Besides a client with no certificate configured, a
 * TLS 1.3 client sends one when its key cannot sign any signature scheme TLS 1.3 allows (RSA-PSS needs more than
 * 512 bits), so the message says so instead of leaving a weak-key client to wonder where its certificate went.
 */
const NO_CERTIFICATE =
  "no client certificate presented: the client sent none (under TLS 1.3, a client whose key can sign no TLS 1.3 " +
  "signature scheme, such as a 512-bit RSA key, sends none; RSA keys need at least 2048 bits)";

const verdicts = new PeerVerdicts();

/**
 * Verifies the connection's client certificate as an X.509-SVID once per connection; later requests on the same
 * connection reuse the verdict, re-checking only the expiry.
 */
export function authenticatePeer(socket: TLSSocket, bundles: TrustBundleSet, now: Date): PeerIdentity {
  const verdict = verdicts.verdict(socket, bundles, now);
  if (verdict === null) return { ok: false, check: "no-certificate", message: NO_CERTIFICATE };
  if (!verdict.ok) return verdict;
  const { id, serialNumber, notAfter } = verdict.svid;
  return { ok: true, principal: id.uri, trustDomain: id.trustDomain, serial: serialNumber, notAfter: notAfter.getTime() };
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
