import { open, readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Agent, request } from "undici";
import { DevCaError, readPrivateKeyFile } from "../identity/index.ts";
import type { CliIO } from "./io.ts";

/**
 * What every operator command shares: how to reach the control plane and prove who is calling. Operators
 * authenticate with a bearer token read from a file, or with their own SVID as the TLS client certificate.
 */
export const CONNECTION_USAGE = `connection (every operator command):
  --server URL          the control plane, e.g. https://cp.example.org:9443
  --token-file F        a file holding the operator token (mode 0600)
  --cert F --key F      or: the operator's SVID and its key
  --ca F                CA certificates for the control plane's server certificate (default: system CAs)
`;

export const CONNECTION_OPTIONS = {
  server: { type: "string" },
  "token-file": { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  ca: { type: "string" },
} as const;

/** A wrong command line: the command prints its usage and exits 2. */
export class OperatorUsageError extends Error {}

/** A failed call; printed as `<command>: <code>: <message>`, exit 1. `code` is the control plane's error code, or the client's. */
export class OperatorError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = "OperatorError";
    this.code = code;
  }
}

type Options = Record<string, { type: "string" | "boolean"; multiple?: boolean }>;

/** Parses the command's own options together with the connection options; any problem is a usage error. */
export function parseOperatorArgs<T extends Options>(argv: string[], options: T, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, ...options }, strict: true, allowPositionals: positionals > 0 });
  } catch (error) {
    throw new OperatorUsageError((error as Error).message);
  }
  if (parsed.positionals.length > positionals) throw new OperatorUsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

export interface ConnectionFlags {
  server?: string;
  "token-file"?: string;
  cert?: string;
  key?: string;
  ca?: string;
}

/** The largest answer read from the control plane. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
const MAX_TOKEN_BYTES = 4096;
/** OpenSSL's codes for a server certificate that does not verify. */
const TLS_FAILURE = /CERT|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/;
const TIMEOUT_MS = 60_000;

export interface OperatorClient {
  /** Calls `path` (with `query`, empty values dropped) and returns the JSON answer of a 2xx; throws OperatorError otherwise. */
  call(method: "GET" | "POST", path: string, init?: { query?: Record<string, string | undefined>; body?: Buffer | string; contentType?: string }): Promise<unknown>;
  close(): Promise<void>;
}

/** Reads the token the way the control plane reads its own: a regular file that group and others cannot access. */
async function readToken(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (error) {
    throw new OperatorError("token-file", `cannot open ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new OperatorError("token-file", `${path} is not a regular file`);
    if ((stat.mode & 0o077) !== 0) {
      throw new OperatorError("token-file", `${path} is accessible by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}); run chmod 600 on it`);
    }
    if (stat.size > MAX_TOKEN_BYTES) throw new OperatorError("token-file", `${path} is larger than ${MAX_TOKEN_BYTES} bytes`);
    const token = (await handle.readFile("utf8")).trim();
    if (token === "") throw new OperatorError("token-file", `${path} is empty`);
    return token;
  } finally {
    await handle.close();
  }
}

async function readPem(path: string, flag: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new OperatorError(flag, `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** Checks the connection flags (usage errors), reads the credentials (OperatorError), and returns a client. */
export async function connect(flags: ConnectionFlags, io: CliIO): Promise<OperatorClient> {
  const server = flags.server;
  if (server === undefined || server === "") throw new OperatorUsageError("missing --server");
  if (!URL.canParse(server) || new URL(server).protocol !== "https:") throw new OperatorUsageError(`--server must be an https:// URL, got ${JSON.stringify(server.slice(0, 100))}`);
  const withToken = flags["token-file"] !== undefined;
  const withCert = flags.cert !== undefined || flags.key !== undefined;
  if (withToken === withCert) throw new OperatorUsageError("give either --token-file F, or --cert F and --key F");
  if (withCert && (flags.cert === undefined || flags.key === undefined)) throw new OperatorUsageError("--cert and --key go together");
  const path = (p: string) => resolve(io.cwd, p);

  const headers: Record<string, string> = { accept: "application/json" };
  const tls: { ca?: string; cert?: string; key?: string } = {};
  if (flags.ca !== undefined) tls.ca = await readPem(path(flags.ca), "ca");
  if (withToken) {
    headers.authorization = `Bearer ${await readToken(path(flags["token-file"]!))}`;
  } else {
    tls.cert = await readPem(path(flags.cert!), "cert");
    try {
      tls.key = await readPrivateKeyFile(path(flags.key!));
    } catch (error) {
      if (error instanceof DevCaError) throw new OperatorError("key", error.message);
      throw error;
    }
  }
  const base = new URL(server);
  const agent = new Agent({ connect: tls, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });

  return {
    async call(method, route, init = {}) {
      const url = new URL(`${base.pathname.replace(/\/+$/, "")}${route}`, base);
      for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined && v !== "") url.searchParams.set(k, v);
      const requestHeaders = { ...headers, ...(init.body === undefined ? {} : { "content-type": init.contentType ?? "application/json" }) };
      let res;
      try {
        res = await request(url, { method, headers: requestHeaders, body: init.body, dispatcher: agent });
      } catch (error) {
        const e = error as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
        const code = e.code ?? e.cause?.code ?? e.message;
        if (TLS_FAILURE.test(code)) throw new OperatorError("tls", `${base.origin}'s certificate is not trusted (${code}); name its CA with --ca`);
        throw new OperatorError("unreachable", `cannot reach ${base.origin}: ${code}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) {
          res.body.destroy();
          throw new OperatorError("too_large", `the answer to ${method} ${route} is larger than ${MAX_ANSWER_BYTES} bytes`);
        }
        chunks.push(chunk as Buffer);
      }
      const text = Buffer.concat(chunks, size).toString("utf8");
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new OperatorError(res.statusCode < 300 ? "bad_answer" : `http-${res.statusCode}`, `${method} ${route} answered ${res.statusCode} without JSON`);
      }
      if (res.statusCode >= 200 && res.statusCode < 300) return json;
      const err = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
      const code = typeof err?.code === "string" && err.code !== "" ? err.code : `http-${res.statusCode}`;
      const message = typeof err?.message === "string" ? err.message : `${method} ${route} answered ${res.statusCode}`;
      throw new OperatorError(code, message);
    },
    close: () => agent.close(),
  };
}

/**
 * Runs an operator command: usage errors print `label: message` and the usage (exit 2), failed calls
 * `label: code: message` (exit 1).
 */
export async function runOperatorCommand(label: string, usage: string, io: CliIO, command: () => Promise<number>): Promise<number> {
  try {
    return await command();
  } catch (error) {
    if (error instanceof OperatorUsageError) {
      io.stderr(`${label}: ${error.message}\n${usage}`);
      return 2;
    }
    if (error instanceof OperatorError) {
      io.stderr(`${label}: ${error.message.split("\n")[0]}\n`);
      return 1;
    }
    throw error;
  }
}

/** Runs `use` with a connected client, closing it after. */
export async function withClient<T>(flags: ConnectionFlags, io: CliIO, use: (client: OperatorClient) => Promise<T>): Promise<T> {
  const client = await connect(flags, io);
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

/** `--output table|json`; table by default. */
export function outputFormat(value: string | undefined): "table" | "json" {
  if (value === undefined || value === "table") return "table";
  if (value === "json") return "json";
  throw new OperatorUsageError(`--output must be table or json, got ${JSON.stringify(value.slice(0, 32))}`);
}

/** A cell as printed: control characters (which could move a terminal's cursor) shown as escapes. */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/**
 * A plain-text table: a header row, columns padded to their widest cell, the last column left ragged. The cells come
 * from the control plane, and some from what nodes reported, so control characters are escaped.
 */
export function formatTable(header: readonly string[], body: readonly (readonly string[])[]): string {
  const rows = body.map((r) => r.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return `${[header, ...rows].map(line).join("\n")}\n`;
}

/** `edgeward <noun> list …`: the one subcommand of a listing command. */
export function runListCommand(noun: string, usage: string, argv: string[], io: CliIO, list: (argv: string[], io: CliIO) => Promise<number>): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    io.stdout(usage);
    return Promise.resolve(0);
  }
  return runOperatorCommand(command === "list" ? `${noun} list` : noun, usage, io, async () => {
    if (command !== "list") throw new OperatorUsageError(command === undefined ? "missing subcommand" : `unknown subcommand "${command}"`);
    return list(rest, io);
  });
}
