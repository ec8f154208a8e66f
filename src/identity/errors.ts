/** A SPIFFE ID failed one of the SPIFFE-ID specification's rules; `check` names the rule. */
export class SpiffeIdError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`spiffeid: ${message}`);
    this.name = "SpiffeIdError";
    this.check = check;
  }
}

/** An X.509-SVID (or its chain) failed verification; `check` is a short stable slug. */
export class X509SvidError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`x509svid: ${message}`);
    this.name = "X509SvidError";
    this.check = check;
  }
}

/** A trust bundle could not be parsed or loaded. */
export class TrustBundleError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`trustbundle: ${message}`);
    this.name = "TrustBundleError";
    this.check = check;
  }
}

/** The development CA refused or failed an operation (including key-file and duration checks). */
export class DevCaError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`devca: ${message}`);
    this.name = "DevCaError";
    this.check = check;
  }
}

/** A certificate and private key do not make a usable pair (unparsable, empty, or not each other's). */
export class KeyPairError extends Error {
  readonly check: string;
  constructor(check: string, message: string) {
    super(`keypair: ${message}`);
    this.name = "KeyPairError";
    this.check = check;
  }
}
