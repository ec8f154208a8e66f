import type { Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Server as GrpcServer } from "@grpc/grpc-js";
import type { AuthzConfig } from "../../config/index.ts";
import { Authorizer, type AuthzState } from "./check.ts";
import { bindGrpc, createGrpcServer } from "./grpc-server.ts";
import { createHttpServer } from "./http-server.ts";
import { createAuthzMetrics } from "./metrics.ts";

/** Room in a gRPC message for the headers and attributes around the largest body the check reads. */
const MESSAGE_OVERHEAD_BYTES = 1024 * 1024;

/**
 * The ext_authz listeners (gRPC, HTTP or both) over a gateway's state: the same policy (read live, so a reload or a
 * bundle activation applies to the next check), ladder, budgets and decision log. Used by `edgeward authz` and, with
 * the gateway's own state, by `serve` when its config has an `authz` section.
 */
export class AuthzServer {
  readonly authorizer: Authorizer;
  readonly #grpc: GrpcServer | null;
  readonly #grpcPort: number | null;
  readonly #grpcHost: string | null;
  readonly #http: HttpServer | null;
  #closing: Promise<void> | null = null;

  private constructor(authorizer: Authorizer, grpc: { server: GrpcServer; host: string; port: number } | null, http: HttpServer | null) {
    this.authorizer = authorizer;
    this.#grpc = grpc?.server ?? null;
    this.#grpcHost = grpc?.host ?? null;
    this.#grpcPort = grpc?.port ?? null;
    this.#http = http;
  }

  /** Registers the authz metrics on the state's registry and starts the configured listeners. */
  static async start(state: AuthzState, config: AuthzConfig): Promise<AuthzServer> {
    const authorizer = new Authorizer(state, createAuthzMetrics(state.metrics.registry), { maxBodyBytes: config.maxBodyBytes });
    let grpc: { server: GrpcServer; host: string; port: number } | null = null;
    let http: HttpServer | null = null;
    try {
      if (config.grpc !== null) {
        const server = createGrpcServer(authorizer, { principalFrom: config.principalFrom, logger: state.logger }, 2 * config.maxBodyBytes + MESSAGE_OVERHEAD_BYTES);
        grpc = { server, host: config.grpc.host, port: 0 };
        grpc.port = await bindGrpc(server, config.grpc);
      }
      if (config.http !== null) {
        http = createHttpServer(authorizer, { pathPrefix: config.pathPrefix, maxBodyBytes: config.maxBodyBytes, logger: state.logger });
        await listen(http, config.http);
      }
    } catch (err) {
      grpc?.server.forceShutdown();
      if (http?.listening) http.close();
      throw err;
    }
    return new AuthzServer(authorizer, grpc, http);
  }

  /** Where the gRPC service listens; null when it is not configured. */
  get grpcAddress(): { host: string; port: number } | null {
    return this.#grpcPort === null ? null : { host: this.#grpcHost!, port: this.#grpcPort };
  }

  get httpAddress(): { host: string; port: number } | null {
    if (this.#http === null) return null;
    const a = this.#http.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** Stops accepting; checks in flight finish (up to `graceMs`). The state (log, budgets) is the caller's to close. */
  close(graceMs = 5_000): Promise<void> {
    this.#closing ??= (async () => {
      const grpc = this.#grpc;
      const http = this.#http;
      const timer = setTimeout(() => {
        grpc?.forceShutdown();
        http?.closeAllConnections();
      }, graceMs);
      await Promise.all([
        grpc === null ? undefined : new Promise<void>((resolve) => grpc.tryShutdown(() => resolve())),
        http === null ? undefined : new Promise<void>((resolve) => {
          http.close(() => resolve());
          http.closeIdleConnections();
        }),
      ]);
      clearTimeout(timer);
    })();
    return this.#closing;
  }
}

function listen(server: HttpServer, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}
