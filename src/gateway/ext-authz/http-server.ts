import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Logger } from "../../telemetry/index.ts";
import { errorBody } from "../errors.ts";
import type { Authorizer, CheckInput, CheckResult } from "./check.ts";

export interface HttpServiceOptions {
  /** Envoy's path_prefix: the check arrives as `<prefix><original path>`. */
  pathPrefix: string;
  maxBodyBytes: number;
  logger: Logger;
}

/**
 * Envoy's HTTP ext_authz protocol. Envoy replays the client's request: same method, `<pathPrefix><original path>`,
 * the allowed headers, and (with_request_body / includeRequestBodyInCheck) the buffered body with
 * `x-envoy-auth-partial-body: true|false`. A 200 allows, and the headers listed in Istio's headersToUpstreamOnAllow
 * are copied onto the upstream request; any other status denies, and the body and the headers listed in
 * headersToDownstreamOnDeny go back to the client.
 *
 * The caller's identity is the XFCC header the sidecar set (list x-forwarded-client-cert in
 * includeRequestHeadersInCheck): this protocol has no source principal.
 *
 * Envoy counts a 5xx from an HTTP authorization service as a failure of the service, which `failure_mode_allow`
 * would turn into an allow; so every refusal here, the authorizer's own failures included, is answered as 403 or
 * another 4xx — the body still says what went wrong.
 */
export function createHttpServer(authorizer: Authorizer, options: HttpServiceOptions): Server {
  const server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000, keepAliveTimeout: 60_000 }, (req, res) => {
    void handle(authorizer, options, req, res);
  });
  return server;
}

async function handle(authorizer: Authorizer, options: HttpServiceOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let result: CheckResult;
  try {
    const bytes = await readCapped(req, options.maxBodyBytes);
    result = await authorizer.check(checkInput(req, bytes, options.pathPrefix));
  } catch (err) {
    options.logger.error({ err: (err as Error)?.message }, "ext_authz (http) internal error; denied");
    result = {
      allowed: false, status: 403, requestId: "", record: null, message: "internal error in the authorizer",
      headers: { "content-type": "application/json", "x-edgeward-decision": "deny" },
      body: errorBody("internal error in the authorizer; the request is denied", "internal_error", "internal_error"),
    };
  }
  if (res.destroyed) return;
  if (result.allowed) {
    res.writeHead(200, { ...result.headers, "content-length": 0 }).end();
    return;
  }
  const status = result.status >= 500 ? 403 : result.status;
  res.writeHead(status, { ...result.headers, "content-length": Buffer.byteLength(result.body) }).end(result.body);
}

export function checkInput(req: IncomingMessage, bytes: Buffer, pathPrefix: string): CheckInput {
  const headers: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(",") : v;
  const url = req.url ?? "";
  // Outside the prefix, or not a path once the prefix is taken off: not a check Envoy would send; refused as such.
  const path = url.startsWith(pathPrefix) && url.charAt(pathPrefix.length) === "/" ? url.slice(pathPrefix.length) : "";
  const partialHeader = Object.hasOwn(headers, "x-envoy-auth-partial-body") ? headers["x-envoy-auth-partial-body"] : undefined;
  return {
    transport: "http",
    identity: { from: "xfcc", header: Object.hasOwn(headers, "x-forwarded-client-cert") ? headers["x-forwarded-client-cert"] : undefined },
    method: req.method ?? "",
    path,
    host: headers.host,
    headers,
    // Envoy sends a body (and the partial-body header) only when it buffered one for the check.
    body: bytes.length > 0 || partialHeader !== undefined ? bytes : undefined,
    partial: partialHeader === "true",
  };
}

/**
 * The body, or its first `cap + 1` bytes when it is longer (enough for the check to refuse it as too large); the
 * rest is read and dropped so that the answer is not lost to a reset.
 */
function readCapped(req: IncomingMessage, cap: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    req.on("data", (chunk: Buffer) => {
      if (kept > cap) return;
      const part = chunk.subarray(0, cap + 1 - kept);
      chunks.push(part);
      kept += part.length;
    });
    req.once("end", () => resolve(Buffer.concat(chunks, kept)));
    req.once("error", reject);
  });
}
