export { istioPrincipal, parseSpiffeId, SpiffeIdError, validateTrustDomain, type SpiffeId } from "./spiffe-id.ts";
export {
  loadTrustBundles,
  parsePemCertificates,
  TrustBundleError,
  trustBundleSet,
  type TrustBundleSet,
} from "./trust-bundle.ts";
export { verifyX509Svid, X509SvidError, type VerifiedSvid } from "./x509-svid.ts";
export { peerCertificateChain } from "./tls-peer.ts";
export { PeerVerdicts, type PeerVerdict } from "./peer-verdict.ts";
export { KeyPairError, parseKeyPair, type KeyPair } from "./key-pair.ts";
export { DevCaError, initDevCa, issueSvid, parseDuration, readPrivateKeyFile } from "./dev-ca.ts";
export { parseXfcc, trustedPeers, xfccIdentity, XfccError, XFCC_LIMITS, type TrustedPeers, type XfccElement, type XfccKey } from "./xfcc.ts";
