import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";

export const TD = "example.org";

/** Test PKI: a dev CA for example.org, the gateway's SVID, and client SVIDs by name (namespace "apps"). */
export async function createPki(dir: string, clients: readonly string[]): Promise<{ caPem: string; caDir: string }> {
  const caDir = join(dir, "ca");
  await initDevCa({ dir: caDir, trustDomain: TD });
  await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/ns/edge/sa/gateway`, out: join(dir, "gateway"), dns: ["localhost"], ip: ["127.0.0.1"] });
  for (const c of clients) await issueSvid({ dir: caDir, spiffeId: `spiffe://${TD}/ns/apps/sa/${c}`, out: join(dir, c) });
  return { caPem: join(caDir, "ca.pem"), caDir };
}

/** An undici client presenting PREFIX.pem/.key (or no certificate at all), trusting `caPem` for the server. */
export function mtlsAgent(caPem: string, prefix?: string): Agent {
  return new Agent({
    connect: {
      ca: readFileSync(caPem),
      servername: "localhost",
      ...(prefix ? { cert: readFileSync(`${prefix}.pem`), key: readFileSync(`${prefix}.key`) } : {}),
    },
  });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any;
}

/** One request through `agent`; JSON bodies are serialized. */
export async function call(agent: Agent, url: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply> {
  const body = init.body === undefined ? undefined : typeof init.body === "string" || Buffer.isBuffer(init.body) ? init.body : JSON.stringify(init.body);
  const res = await request(url, {
    dispatcher: agent,
    method: (init.method ?? (body === undefined ? "GET" : "POST")) as "GET",
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...init.headers },
    body: body as string | undefined,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) };
}
