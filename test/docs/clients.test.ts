import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { loadConfig } from "../../src/config/index.ts";
import { Gateway } from "../../src/gateway/index.ts";
import { initDevCa, issueSvid } from "../../src/identity/index.ts";
import { createLogger } from "../../src/telemetry/index.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { killGroup, spawnChild } from "../support/processes.ts";
import { within } from "../support/wait.ts";

/**
 * docs/clients.md's snippets, taken from the page (the fenced block after each `<!-- snippet: NAME -->` marker) and run
 * as a reader would run them: in a folder laid out as `edgeward demo` lays out `.edgeward/demo/`, against a gateway
 * with real mTLS and the example policy, in front of a stand-in runner that serves the model "tiny". The one change
 * made to a snippet is the gateway's port (the page says 8443; the test listens on a free one).
 */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOC = readFileSync(join(ROOT, "docs/clients.md"), "utf8");
const NODE = join(ROOT, "node_modules/.bin/node");
const DEMO = ".edgeward/demo";
const TD = "example.org";
const DAY = 24 * 3600;
/** The address the snippets name. */
const DOC_ADDRESS = "127.0.0.1:8443";

/** What the stand-in runner answers: a fixed text, and for a stream one chunk `tN ` per token asked for. */
const ANSWER = "hello from the fake runner";
const STREAMED = Array.from({ length: 16 }, (_, i) => `t${i} `).join("");

/** The code of the fenced block that follows `<!-- snippet: NAME -->`, checking its language tag. */
function snippet(name: string, lang: string): string {
  const m = new RegExp(`^<!-- snippet: ${name} -->\\n\`\`\`(\\w+)\\n([\\s\\S]*?)^\`\`\`$`, "m").exec(DOC);
  assert.ok(m, `docs/clients.md has a fenced block after <!-- snippet: ${name} -->`);
  assert.equal(m[1], lang, `the ${name} snippet is tagged ${lang}`);
  return m[2]!;
}

const hasTool = (command: string): boolean => spawnSync(command, ["--version"], { stdio: "ignore" }).error === undefined;
const CURL_MISSING = hasTool("curl") ? false : "curl is not installed (CI installs it with apt-get install curl): the curl snippets were not run";
const PYTHON_MISSING = hasTool("python3") ? false : "python3 is not installed: the Python snippet's TLS setup was not run";

/** The environment of the snippets' processes: without proxies, which would take 127.0.0.1 elsewhere. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of Object.keys(env)) if (/^(https?|all|no)_proxy$/i.test(k)) delete env[k];
  return env;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion in `cwd`; one still running after `timeoutMs` is killed and the test fails. */
async function runTool(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<Ran> {
  const child = spawnChild(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  try {
    const code = await within(`${command} ${args[0] ?? ""}`, closed, timeoutMs);
    return { code, stdout, stderr };
  } catch (err) {
    killGroup(child, "SIGKILL");
    throw new Error(`${(err as Error).message}; stderr:\n${stderr}\nstdout:\n${stdout}`);
  }
}

/** Server-Sent Events' data lines, parsed (all but `[DONE]`), and whether `[DONE]` ended them. */
function events(text: string): { chunks: any[]; done: boolean } {
  const data = text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice("data: ".length));
  return { chunks: data.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d)), done: data.at(-1) === "[DONE]" };
}

describe("docs/clients.md: the client snippets, run against a gateway with real mTLS", () => {
  let dir: string;
  let runner: FakeRunner;
  let gateway: Gateway | undefined;
  /** The headers of every request the runner was sent. */
  const upstreamHeaders: IncomingHttpHeaders[] = [];
  let port = 0;

  /** A snippet as it runs here: the same, with the gateway's port. */
  const here = (code: string): string => {
    assert.ok(code.includes(DOC_ADDRESS), `the snippet calls ${DOC_ADDRESS}`);
    return code.replaceAll(DOC_ADDRESS, `127.0.0.1:${port}`);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-clients-"));
    // The layout `edgeward demo` writes (src/cli/demo.ts, prepare()): its CA, the gateway's SVID with the names
    // localhost and 127.0.0.1, the assistant's and the intruder's SVIDs.
    const demo = join(dir, DEMO);
    mkdirSync(join(demo, "certs"), { recursive: true, mode: 0o700 });
    await initDevCa({ dir: join(demo, "ca"), trustDomain: TD });
    await issueSvid({ dir: join(demo, "ca"), spiffeId: `spiffe://${TD}/ns/edge/sa/gateway`, out: join(demo, "certs", "gateway"), ttlSeconds: DAY, dns: ["localhost"], ip: ["127.0.0.1"] });
    for (const who of ["assistant", "intruder"]) {
      await issueSvid({ dir: join(demo, "ca"), spiffeId: `spiffe://${TD}/ns/kiosk/sa/${who}`, out: join(demo, "certs", who), ttlSeconds: DAY });
    }
    // The assistant's SPIFFE ID, vouched for by a CA the gateway does not trust.
    await initDevCa({ dir: join(dir, "rogue", "ca"), trustDomain: TD });
    await issueSvid({ dir: join(dir, "rogue", "ca"), spiffeId: `spiffe://${TD}/ns/kiosk/sa/assistant`, out: join(dir, "rogue", "assistant") });
    // The Node snippet imports openai and undici as a checkout has them.
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");

    runner = await FakeRunner.start();
    runner.server.on("request", (req) => upstreamHeaders.push(req.headers));
    const config = join(demo, "edgeward.yaml");
    writeFileSync(config, stringify({
      listen: "127.0.0.1:0", admin: "127.0.0.1:0",
      tls: { cert: "certs/gateway.pem", key: "certs/gateway.key" },
      trustBundles: { [TD]: "ca/ca.pem" },
      policy: join(ROOT, "examples/policy.yaml"),
      runners: [{ name: "fake", url: runner.url, models: ["tiny"] }],
      decisionLog: "data/decisions.log",
      limits: { maxTokens: 64 },
    }));
    const quiet = new Writable({ write: (_chunk, _enc, done) => done() });
    gateway = await Gateway.start(await loadConfig(config), { logger: createLogger("warn", quiet) });
    port = gateway.address.port;
  });

  after(async () => {
    await gateway?.close(0);
    await runner?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("Node: the openai client over an undici Agent gets a completion and a stream, and never passes the API key on", async () => {
    const code = snippet("node", "js");
    writeFileSync(join(dir, "client.mjs"), here(code));
    const before = runner.bodies.length;
    const r = await runTool(NODE, ["client.mjs"], dir, childEnv());
    assert.equal(r.code, 0, `node client.mjs failed:\n${r.stderr}`);
    assert.equal(r.stdout, `${ANSWER}\n${STREAMED}\n`);
    assert.equal(r.stderr, "");
    // Both requests reached the runner as decided: the bound as asked, the stream with usage asked for.
    const sent = runner.bodies.slice(before);
    assert.deepEqual(sent.map((b) => [b.model, b.max_tokens, b.stream ?? false]), [["tiny", 16, false], ["tiny", 16, true]]);
    // The client sent `Authorization: Bearer unused`; the runner saw none of it.
    assert.ok(upstreamHeaders.length > 0);
    assert.ok(upstreamHeaders.every((h) => h.authorization === undefined), "no authorization header reaches the runner");
  });

  test("Node: the same snippet with the intruder's SVID is refused by the policy (403 policy_denied)", async () => {
    const code = snippet("node", "js");
    assert.ok(code.includes("certs/assistant."));
    writeFileSync(join(dir, "intruder.mjs"), here(code).replaceAll("certs/assistant.", "certs/intruder."));
    const r = await runTool(NODE, ["intruder.mjs"], dir, childEnv());
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /PermissionDeniedError: 403 /);
    assert.match(r.stderr, /code: 'policy_denied'/);
  });

  test("curl: a completion, and the same answer streamed with -N", { skip: CURL_MISSING }, async () => {
    const env = childEnv({ CURL_HOME: dir });
    const plain = await runTool("sh", ["-c", here(snippet("curl", "sh"))], dir, env);
    assert.equal(plain.code, 0, plain.stderr);
    const answer = JSON.parse(plain.stdout);
    assert.equal(answer.object, "chat.completion");
    assert.equal(answer.choices[0].message.content, ANSWER);

    const streamed = await runTool("sh", ["-c", here(snippet("curl-stream", "sh"))], dir, env);
    assert.equal(streamed.code, 0, streamed.stderr);
    const { chunks, done } = events(streamed.stdout);
    assert.ok(done, `the stream ends with data: [DONE]:\n${streamed.stdout}`);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join(""), STREAMED);

    // The gateway's certificate names localhost too.
    const byName = await runTool("sh", ["-c", here(snippet("curl", "sh")).replace("https://127.0.0.1:", "https://localhost:")], dir, env);
    assert.equal(byName.code, 0, byName.stderr);
    assert.equal(JSON.parse(byName.stdout).choices[0].message.content, ANSWER);
  });

  test("curl: no client certificate, or one from a CA the gateway does not trust, is answered 401 invalid_client_certificate", { skip: CURL_MISSING }, async () => {
    const env = childEnv({ CURL_HOME: dir });
    const code = snippet("curl", "sh");
    const credentials = /--cert (\S+) --key (\S+) /;
    assert.match(code, credentials);
    const withStatus = (c: string) => `${here(c).trimEnd()} -w '\\n%{http_code}'`;
    const variants = {
      "no certificate": code.replace(credentials, ""),
      "a certificate from another CA": code.replace(credentials, "--cert rogue/assistant.pem --key rogue/assistant.key "),
    };
    for (const [what, variant] of Object.entries(variants)) {
      const r = await runTool("sh", ["-c", withStatus(variant)], dir, env);
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      const [body, status] = r.stdout.split("\n");
      assert.equal(status, "401", `${what}: ${r.stdout}`);
      const error = JSON.parse(body!).error;
      assert.equal(error.code, "invalid_client_certificate", what);
      assert.equal(error.type, "authentication_error", what);
    }
  });

  test("Python: the snippet's ssl_context gets a completion over http.client (openai and httpx 0.28 are not installed here)", { skip: PYTHON_MISSING }, async () => {
    const code = here(snippet("python", "python"));
    // The TLS setup: everything before the client is made, but the imports of packages this machine lacks.
    const lines = code.split("\n");
    const clientAt = lines.findIndex((l) => l.startsWith("client = OpenAI("));
    assert.ok(clientAt > 0, "the Python snippet makes `client = OpenAI(`");
    const setup = lines.slice(0, clientAt).filter((l) => !/^(import httpx|from openai import)\b/.test(l)).join("\n");
    assert.match(setup, /ssl_context = ssl\.create_default_context\(cafile=/);
    assert.match(setup, /ssl_context\.load_cert_chain\(/);
    assert.match(code, /http_client=httpx\.Client\(verify=ssl_context\)/);
    const baseUrl = /base_url="([^"]+)"/.exec(code)?.[1];
    assert.ok(baseUrl, "the Python snippet sets base_url");
    const script = `${setup}

import http.client, json
from urllib.parse import urlsplit
base = urlsplit(${JSON.stringify(baseUrl)})
conn = http.client.HTTPSConnection(base.hostname, base.port, context=ssl_context, timeout=20)
body = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16}
conn.request("POST", base.path + "/chat/completions", body=json.dumps(body), headers={"content-type": "application/json", "authorization": "Bearer unused"})
resp = conn.getresponse()
print(resp.status, json.loads(resp.read())["choices"][0]["message"]["content"])
`;
    const r = await runTool("python3", ["-c", script], dir, childEnv());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `200 ${ANSWER}\n`);
  });
});
