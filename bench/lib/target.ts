import type { Dispatcher } from "undici";

/** Files and addresses every target of a comparison shares. */
export interface BenchContext {
  /** Scratch directory for this run (configs, logs, sockets). */
  workDir: string;
  /** The stand-in model server, e.g. "http://127.0.0.1:41234" (its own process). */
  modelServerUrl: string;
  modelServerPid: number;
  /** Dev-CA PKI for mTLS targets (trust domain example.org). */
  pki: {
    caPem: string;          // trust bundle (PEM file path)
    serverCert: string;     // server SVID chain for "localhost"/127.0.0.1 (PEM file path)
    serverKey: string;      // its key (0600)
    clientCert: string;     // client SVID spiffe://example.org/ns/bench/sa/client
    clientKey: string;
  };
}

/** A started target: where to send requests, how (keep-alive client), and which processes to charge CPU to. */
export interface RunningTarget {
  name: string;
  /** Base URL; requests go to `${url}/v1/chat/completions`. */
  url: string;
  /** Keep-alive client for this target (with the client certificate when the target is mTLS). */
  dispatcher: Dispatcher;
  /** A client that opens a new connection (and TLS handshake) per request, for the handshake-rate scenario. */
  freshConnections(): Dispatcher;
  /** Processes whose CPU time is the target's cost (the proxy itself, never the model server). Empty for "direct". */
  pids: number[];
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  /** True when the target speaks mTLS (compared with mTLS peers), false for plain HTTP. */
  mtls: boolean;
  /** Why the target cannot run here (e.g. nginx not installed), or null. */
  unavailable(): Promise<string | null>;
  start(ctx: BenchContext): Promise<RunningTarget>;
}
