import { fileURLToPath } from "node:url";
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { loadSync, type Options } from "@grpc/proto-loader";
import type { Logger } from "../../telemetry/index.ts";
import { errorBody } from "../errors.ts";
import type { Authorizer, CheckInput, CheckResult } from "./check.ts";

/** The .proto subset transcribed from Envoy's API (same packages and field numbers), beside this file. */
export const PROTO_DIR = fileURLToPath(new URL("./proto/", import.meta.url));
export const EXTERNAL_AUTH_PROTO = "envoy/service/auth/v3/external_auth.proto";
/** How the messages are decoded: proto field names, int64 as number, enums as numbers, bytes as Buffer. */
export const PROTO_OPTIONS: Options = { keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true, includeDirs: [PROTO_DIR] };

/** envoy.service.auth.v3.Authorization, loaded once. */
export function authorizationService(): ServiceDefinition {
  return loadSync(EXTERNAL_AUTH_PROTO, PROTO_OPTIONS)["envoy.service.auth.v3.Authorization"] as ServiceDefinition;
}

/** google.rpc.Code values used in CheckResponse.status. */
const OK = 0;
const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;

/** A CheckRequest as decoded with PROTO_OPTIONS (absent fields are undefined). */
interface SocketAddress {
  address?: string;
  port_value?: number;
}
interface Peer {
  address?: { socket_address?: SocketAddress };
  principal?: string;
}
interface HttpRequest {
  id?: string;
  method?: string;
  headers?: Record<string, string>;
  header_map?: { headers?: { key?: string; value?: string; raw_value?: Buffer }[] };
  path?: string;
  host?: string;
  size?: number;
  body?: string;
  raw_body?: Buffer;
}
export interface CheckRequest {
  attributes?: { source?: Peer; destination?: Peer; request?: { http?: HttpRequest } };
}

interface HeaderValueOption {
  header: { key: string; value: string };
  append: { value: boolean };
}
export interface CheckResponse {
  status: { code: number; message?: string };
  denied_response?: { status: { code: number }; headers: HeaderValueOption[]; body: string };
  ok_response?: { headers: HeaderValueOption[] };
}

export interface GrpcServiceOptions {
  principalFrom: "source" | "xfcc";
  logger: Logger;
  /** Schedules the deny that answers before the call's deadline; returns its cancel. Tests replace the timer. */
  atDeadline?: (deny: () => void, delayMs: number) => () => void;
}

function atDeadline(deny: () => void, delayMs: number): () => void {
  const timer = setTimeout(deny, delayMs);
  return () => clearTimeout(timer);
}

/**
 * The gRPC Authorization service. It never fails a call: every outcome, an internal error included, is a
 * CheckResponse (an error status would be Envoy's to interpret, and `failure_mode_allow` turns errors into allows).
 * It answers before the call's deadline: a check still undecided just before it is denied.
 */
export function createGrpcServer(authorizer: Authorizer, options: GrpcServiceOptions, maxMessageBytes: number): Server {
  const server = new Server({ "grpc.max_receive_message_length": maxMessageBytes });
  const implementation: UntypedServiceImplementation = {
    Check: (call: ServerUnaryCall<CheckRequest, CheckResponse>, callback: sendUnaryData<CheckResponse>) => {
      let answered = false;
      let cancelDeny: (() => void) | undefined;
      const answer = (response: CheckResponse) => {
        if (answered) return;
        answered = true;
        cancelDeny?.();
        callback(null, response);
      };
      const left = deadlineMs(call.getDeadline()) - Date.now();
      if (Number.isFinite(left)) {
        // Leave part of the budget for the answer to travel and for a busy event loop: an eighth, 5 to 25 ms
        // (Envoy's default timeout is 200 ms).
        cancelDeny = (options.atDeadline ?? atDeadline)(() => {
          options.logger.warn({ deadlineMs: left }, "ext_authz check not decided before the call's deadline; denied");
          answer(denied(503, "the authorizer could not decide before the proxy's deadline; the request is denied"));
        }, Math.max(0, left - Math.max(5, Math.min(25, left / 8))));
      }
      let input: CheckInput;
      try {
        input = checkInput(call.request, options.principalFrom);
      } catch (err) {
        options.logger.error({ err: (err as Error)?.message }, "ext_authz: unreadable CheckRequest; denied");
        answer(denied(403, "the check request could not be read; the request is denied"));
        return;
      }
      authorizer.check(input).then((result) => answer(toCheckResponse(result)), (err: unknown) => {
        options.logger.error({ err: (err as Error)?.message }, "ext_authz internal error; denied");
        answer(denied(503, "internal error in the authorizer; the request is denied"));
      });
    },
  };
  server.addService(authorizationService(), implementation);
  return server;
}

function deadlineMs(deadline: Date | number): number {
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

/** Maps the decoded CheckRequest onto a check. */
export function checkInput(request: CheckRequest, principalFrom: "source" | "xfcc"): CheckInput {
  const attributes = request.attributes ?? {};
  const http = attributes.request?.http ?? {};
  const headers = headerMap(http);
  const partialHeader = Object.hasOwn(headers, "x-envoy-auth-partial-body") ? headers["x-envoy-auth-partial-body"] : undefined;
  const raw = http.raw_body !== undefined && http.raw_body.length > 0 ? http.raw_body : undefined;
  const text = http.body !== undefined && http.body !== "" ? http.body : undefined;
  // Envoy adds x-envoy-auth-partial-body (dropping any the client sent) exactly when it buffered the body for the
  // check; proto3 cannot tell an empty body from none, so that header says whether a body was sent.
  const body = raw ?? text ?? (partialHeader !== undefined ? "" : undefined);
  const source = attributes.source?.address?.socket_address?.address;
  const port = attributes.destination?.address?.socket_address?.port_value;
  const destination = attributes.destination?.address?.socket_address?.address;
  return {
    transport: "grpc",
    identity: principalFrom === "source"
      ? { from: "source", principal: attributes.source?.principal }
      : { from: "xfcc", header: Object.hasOwn(headers, "x-forwarded-client-cert") ? headers["x-forwarded-client-cert"] : undefined },
    method: http.method ?? "",
    path: http.path ?? "",
    host: http.host === undefined || http.host === "" ? undefined : http.host,
    headers,
    body,
    partial: partialHeader === "true",
    ...(source === undefined || source === "" ? {} : { sourceIp: source }),
    ...(port === undefined || port === 0 ? {} : { port }),
    ...(destination === undefined || destination === "" ? {} : { destinationIp: destination }),
  };
}

/** The request headers, lower-cased, from `headers` or (encode_raw_headers) `header_map`; repeats joined with ",". */
function headerMap(http: HttpRequest): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  if (http.headers !== undefined) {
    for (const [k, v] of Object.entries(http.headers)) out[k.toLowerCase()] = v;
  }
  for (const h of http.header_map?.headers ?? []) {
    if (h.key === undefined || h.key === "") continue;
    const key = h.key.toLowerCase();
    const value = h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString("latin1") : (h.value ?? "");
    out[key] = key in out ? `${out[key]},${value}` : value;
  }
  return out;
}

function headerOptions(headers: Record<string, string>): HeaderValueOption[] {
  // append=false: Envoy overwrites a header of the same name, so a caller cannot pre-set x-edgeward-principal.
  return Object.entries(headers).map(([key, value]) => ({ header: { key, value }, append: { value: false } }));
}

export function toCheckResponse(result: CheckResult): CheckResponse {
  if (result.allowed) return { status: { code: OK }, ok_response: { headers: headerOptions(result.headers) } };
  return {
    status: { code: result.status === 401 ? UNAUTHENTICATED : PERMISSION_DENIED, message: result.message },
    denied_response: { status: { code: result.status }, headers: headerOptions(result.headers), body: result.body },
  };
}

function denied(status: number, message: string): CheckResponse {
  const body = errorBody(message, "internal_error", "internal_error");
  return {
    status: { code: PERMISSION_DENIED, message },
    denied_response: { status: { code: status }, headers: headerOptions({ "content-type": "application/json", "x-edgeward-decision": "deny" }), body },
  };
}

/** Binds `host:port` (port 0: any free port) and resolves the port bound. */
export function bindGrpc(server: Server, at: { host: string; port: number }): Promise<number> {
  const host = at.host.includes(":") ? `[${at.host}]` : at.host;
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${at.port}`, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
  });
}
