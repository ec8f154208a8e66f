/**
 * The least a Node proxy does on this path — the cost of Node itself: terminate (m)TLS, read the client
 * certificate's URI SAN, JSON.parse the body, forward it over a keep-alive undici Pool, pipe the answer back
 * (streams included, with backpressure).
 * Run: node bench/targets/minimal-proxy-server.ts --upstream URL [--port 0] [--cert F --key F --ca F]
 */
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { TLSSocket } from "node:tls";
import { pipeline } from "node:stream";
import { parseArgs } from "node:util";
import { Pool } from "undici";

const { values } = parseArgs({
  options: {
    upstream: { type: "string" },
    port: { type: "string", default: "0" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
  },
});
if (values.upstream === undefined) throw new Error("minimal-proxy: --upstream is required");
const mtls = values.cert !== undefined;
const MAX_BODY = 1024 * 1024;

const upstream = new Pool(values.upstream, { keepAliveTimeout: 120_000, keepAliveMaxTimeout: 120_000 });
/** The caller's SPIFFE ID, read once per connection (the chain was verified in the handshake). */
const callers = new WeakMap<object, string | null>();

function callerOf(req: IncomingMessage): string | null {
  const socket = req.socket as TLSSocket;
  let id = callers.get(socket);
  if (id === undefined) {
    const san = socket.getPeerCertificate().subjectaltname ?? "";
    id = /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1] ?? null;
    callers.set(socket, id);
  }
  return id;
}

function fail(res: ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({ error: { message, type: "proxy_error", code: null } });
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (mtls && callerOf(req) === null) return fail(res, 401, "client certificate has no SPIFFE ID");
  const parts: Buffer[] = [];
  let size = 0;
  req.on("data", (d: Buffer) => {
    size += d.length;
    if (size <= MAX_BODY) parts.push(d);
  });
  req.on("end", () => {
    if (size > MAX_BODY) return fail(res, 413, "body too large");
    const raw = Buffer.concat(parts);
    try {
      const parsed: unknown = JSON.parse(raw.toString("utf8"));
      if (parsed === null || typeof parsed !== "object") return fail(res, 400, "body must be a JSON object");
    } catch {
      return fail(res, 400, "invalid JSON");
    }
    const abort = new AbortController();
    res.once("close", () => abort.abort());
    upstream.request({
      path: req.url ?? "/", method: "POST", headers: { "content-type": "application/json" }, body: raw, signal: abort.signal,
    }).then((answer) => {
      const headers: Record<string, string> = { "content-type": String(answer.headers["content-type"] ?? "application/json") };
      const length = answer.headers["content-length"];
      if (typeof length === "string") headers["content-length"] = length;
      res.writeHead(answer.statusCode, headers);
      pipeline(answer.body, res, () => {});
    }, () => {
      if (!res.headersSent) fail(res, 502, "upstream unavailable");
      else res.destroy();
    });
  });
}

const server: Server = mtls
  ? createHttpsServer({
    cert: readFileSync(values.cert!), key: readFileSync(values.key!), ca: readFileSync(values.ca!),
    requestCert: true, rejectUnauthorized: true, keepAliveTimeout: 120_000,
  }, handle)
  : createHttpServer({ keepAliveTimeout: 120_000 }, handle);
server.listen({ port: Number(values.port), host: "127.0.0.1", backlog: 4096 }, () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("minimal-proxy: no TCP address");
  process.stdout.write(`minimal proxy listening on ${mtls ? "https" : "http"}://127.0.0.1:${address.port}\n`);
});
const shutdown = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once("SIGTERM", shutdown);
process.once("SIGINT", shutdown);
