import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent, request, type Dispatcher } from "undici";
import { createPki } from "../../bench/lib/context.ts";
import type { BenchContext, RunningTarget, Target } from "../../bench/lib/target.ts";
import { nginxConfig, nginxMtls, nginxPlain } from "../../bench/targets/nginx.ts";
import { portkey, withHeaders } from "../../bench/targets/portkey.ts";
import { FakeRunner } from "../support/fake-runner.ts";
import { isAlive } from "../support/processes.ts";

const EXTRA = { "x-portkey-provider": "openai", authorization: "Bearer dummy" };

/** The options `withHeaders` passes on for one request with `headers`. */
function dispatched(headers: Dispatcher.DispatchOptions["headers"]): Dispatcher.DispatchOptions["headers"] {
  let seen: Dispatcher.DispatchOptions | undefined;
  const dispatch = withHeaders(EXTRA)((opts) => {
    seen = opts;
    return true;
  });
  dispatch({ origin: "http://127.0.0.1:1", path: "/", method: "POST", headers }, {} as Dispatcher.DispatchHandler);
  return seen?.headers;
}

describe("portkey headers interceptor", () => {
  test("adds the routing headers whichever header shape the caller used", () => {
    assert.deepEqual(dispatched(undefined), EXTRA);
    assert.deepEqual(dispatched(null), EXTRA);
    assert.deepEqual(dispatched({ "content-type": "application/json" }), { "content-type": "application/json", ...EXTRA });
    assert.deepEqual(dispatched(["content-type", "application/json"]), [
      "content-type", "application/json", "x-portkey-provider", "openai", "authorization", "Bearer dummy",
    ]);
    assert.deepEqual([...(dispatched(new Map([["content-type", "application/json"]])) as Iterable<unknown>)], [
      ["content-type", "application/json"], ["x-portkey-provider", "openai"], ["authorization", "Bearer dummy"],
    ]);
  });
});

describe("nginx configuration", () => {
  const base = { prefix: "/run/bench/nginx", port: 8443, upstream: "127.0.0.1:9000" };

  test("the mTLS variant requires a client certificate from the given CA; the plain one has no TLS", () => {
    const mtls = nginxConfig({ ...base, tls: { cert: "/p/server.pem", key: "/p/server.key", clientCa: "/p/ca.pem" } });
    assert.match(mtls, /listen 127\.0\.0\.1:8443 ssl;/);
    assert.match(mtls, /ssl_verify_client on;/);
    assert.match(mtls, /ssl_client_certificate \/p\/ca\.pem;/);
    const plain = nginxConfig(base);
    assert.match(plain, /listen 127\.0\.0\.1:8443;/);
    assert.doesNotMatch(plain, /ssl/);
  });

  test("one worker, keep-alive upstream, no buffering, no access log, everything under the prefix", () => {
    const conf = nginxConfig(base);
    assert.match(conf, /^worker_processes 1;$/m);
    assert.match(conf, /server 127\.0\.0\.1:9000;\s+keepalive 64;/);
    assert.match(conf, /proxy_http_version 1\.1;/);
    assert.match(conf, /proxy_set_header Connection "";/);
    assert.match(conf, /proxy_buffering off;/);
    assert.match(conf, /access_log off;/);
    for (const [, path] of conf.matchAll(/(?:pid|error_log|_temp_path) (\S+?);?(?:\s|$)/g)) {
      assert.ok(path!.startsWith("/run/bench/nginx/"), path);
    }
  });
});

/** The started targets against a stand-in model server; skipped where bench/setup.sh has not run. */
async function skipReason(targets: Target[]): Promise<string | false> {
  for (const t of targets) {
    const reason = await t.unavailable();
    if (reason !== null) return `${t.name}: ${reason}`;
  }
  return false;
}
const skip = await skipReason([nginxMtls, nginxPlain, portkey]);

describe("comparison targets", { skip }, () => {
  let dir: string;
  let fake: FakeRunner;
  let ctx: BenchContext;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "edgeward-bench-targets-"));
    fake = await FakeRunner.start();
    ctx = { workDir: dir, modelServerUrl: fake.url, modelServerPid: process.pid, pki: await createPki(dir) };
  });
  after(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const chat = (stream: boolean) => JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }], max_tokens: 5, stream });

  async function post(url: string, dispatcher: Dispatcher, body: string): Promise<{ status: number; text: string }> {
    const res = await request(`${url}/v1/chat/completions`, { dispatcher, method: "POST", headers: { "content-type": "application/json" }, body });
    return { status: res.statusCode, text: await res.body.text() };
  }

  async function expectSameAsDirect(running: RunningTarget, dispatcher: Dispatcher): Promise<void> {
    const direct = new Agent();
    try {
      for (const stream of [false, true]) {
        const expected = await post(fake.url, direct, chat(stream));
        assert.deepEqual(await post(running.url, dispatcher, chat(stream)), expected);
      }
    } finally {
      await direct.close();
    }
  }

  for (const target of [nginxPlain, nginxMtls, portkey]) {
    test(`${target.name}: a completion and a stream pass intact, fresh connections work, stop ends its processes`, async () => {
      const running = await target.start(ctx);
      try {
        assert.equal(new URL(running.url).hostname, "127.0.0.1");
        assert.ok(running.pids.length >= (target.name.startsWith("nginx") ? 2 : 1), `pids ${running.pids}`);
        await expectSameAsDirect(running, running.dispatcher);
        const fresh = running.freshConnections();
        try {
          assert.equal((await post(running.url, fresh, chat(false))).status, 200);
        } finally {
          await fresh.close();
        }
      } finally {
        await running.stop();
      }
      assert.deepEqual(running.pids.filter(isAlive), []);
    });
  }

  test("nginx-mtls refuses a client without a certificate", async () => {
    const running = await nginxMtls.start(ctx);
    const anonymous = new Agent({ connect: { ca: readFileSync(ctx.pki.caPem), servername: "localhost" } });
    try {
      const reply = await post(running.url, anonymous, chat(false));
      assert.equal(reply.status, 400);
      assert.match(reply.text, /No required SSL certificate was sent/);
    } finally {
      await anonymous.close();
      await running.stop();
    }
  });
});
