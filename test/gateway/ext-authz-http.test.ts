import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { request } from "undici";
import { RevocationList } from "../../src/bundle/index.ts";
import { CHAT, chat, id, startAuthz, xfcc, type AuthzFixture } from "../support/authz-fixture.ts";

const PREFIX = "/ext-authz";

interface Sent {
  method?: string;
  path?: string;
  xfcc?: string | null;
  body?: string;
  /** Envoy adds x-envoy-auth-partial-body only when it buffered a body; null leaves it out. */
  partial?: "true" | "false" | null;
  headers?: Record<string, string>;
}

/**
 * A check shaped as Envoy's HTTP ext_authz client sends it: the client's method, `<path_prefix><original path>`,
 * Host and the allowed headers (here: Istio's includeRequestHeadersInCheck with x-forwarded-client-cert), the
 * buffered body with Content-Length, and x-envoy-auth-partial-body.
 */
async function check(base: string, s: Sent) {
  const body = s.body ?? (s.method === "GET" ? undefined : chat());
  const res = await request(`${base}${s.path ?? `${PREFIX}${CHAT}`}`, {
    method: (s.method ?? "POST") as "POST",
    headers: {
      host: "vllm.llm.svc:8000",
      "x-request-id": "7c0e1f2a-envoy",
      ...(s.xfcc === null ? {} : { "x-forwarded-client-cert": s.xfcc ?? xfcc(id("alice")) }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(s.partial === null || (body === undefined && s.partial === undefined) ? {} : { "x-envoy-auth-partial-body": s.partial ?? "false" }),
      ...s.headers,
    },
    body,
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers as Record<string, string>, text, error: text === "" ? undefined : JSON.parse(text).error };
}

describe("ext_authz HTTP service (Envoy's HTTP protocol)", () => {
  let f: AuthzFixture;
  let base: string;
  let checks = 0;
  const send = (s: Sent) => {
    checks++;
    return check(base, s);
  };

  before(async () => {
    f = await startAuthz({ pathPrefix: PREFIX });
    base = `http://127.0.0.1:${f.server.httpAddress!.port}`;
  });
  after(() => f.close());

  test("allowed: 200, empty body, and the headers for upstream (headersToUpstreamOnAllow)", async () => {
    const r = await send({});
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, "");
    assert.equal(r.headers["x-edgeward-decision"], "allow");
    assert.equal(r.headers["x-edgeward-principal"], id("alice"));
    assert.equal(r.headers["x-edgeward-request-id"], "7c0e1f2a-envoy");
  });

  test("denied by policy: 403 with the body and headers to pass back to the client", async () => {
    const r = await send({ xfcc: xfcc(id("mallory")) });
    assert.equal(r.status, 403);
    assert.equal(r.headers["content-type"], "application/json");
    assert.equal(r.headers["x-edgeward-decision"], "deny");
    assert.equal(r.error.code, "policy_denied");
  });

  test("the path arrives under the prefix; the policy sees the original path (and query)", async () => {
    assert.equal((await send({ path: `${PREFIX}/v1/embeddings?x=1`, body: JSON.stringify({ model: "m", input: "hi" }), xfcc: xfcc(id("erin")) })).status, 200);
    assert.equal((await send({ path: `${PREFIX}${CHAT}`, xfcc: xfcc(id("erin")) })).status, 403, "erin: embeddings only");
  });

  test("a request outside the prefix is refused", async () => {
    const r = await send({ path: CHAT });
    assert.equal(r.status, 400);
    assert.equal(r.error.code, "not_http");
    assert.equal((await send({ path: `${PREFIX}x${CHAT}` })).status, 400);
  });

  test("other methods arrive as sent: GET /v1/models needs no body", async () => {
    assert.equal((await send({ method: "GET", path: `${PREFIX}/v1/models` })).status, 200);
    assert.equal((await send({ method: "DELETE", path: `${PREFIX}/v1/models` })).status, 403);
  });

  describe("identity from the sidecar's XFCC", () => {
    test("the last element is the caller; a forged earlier element is ignored", async () => {
      const r = await send({ xfcc: `By=spiffe://example.org/ns/llm/sa/vllm;URI=${id("alice")},${xfcc(id("mallory"))}` });
      assert.equal(r.status, 403);
      assert.equal((await send({ xfcc: `URI=${id("mallory")},${xfcc(id("alice"))}` })).status, 200);
    });

    test("no XFCC (not in includeRequestHeadersInCheck, or no client certificate): 401 saying so", async () => {
      const r = await send({ xfcc: null });
      assert.equal(r.status, 401);
      assert.match(r.error.message, /no x-forwarded-client-cert header/);
    });

    test("several identities: 401", async () => {
      const r = await send({ xfcc: `Hash=ab;URI=${id("alice")};URI=${id("bob")}` });
      assert.equal(r.status, 401);
      assert.match(r.error.message, /exactly one identity/);
    });

    test("Envoy's `URI=` for a peer without a URI SAN: 401", async () => {
      assert.equal((await send({ xfcc: "By=spiffe://example.org/ns/llm/sa/vllm;Hash=ab;Subject=\"CN=legacy\";URI=" })).status, 401);
    });

    test("a malformed header: 401 naming the defect", async () => {
      const r = await send({ xfcc: `URI="${id("alice")}` });
      assert.equal(r.status, 401);
      assert.match(r.error.message, /unterminated quoted value/);
    });
  });

  describe("bodies", () => {
    test("body conditions apply: model, stream and max_tokens from the buffered body", async () => {
      assert.equal((await send({ xfcc: xfcc(id("bob")), body: chat({ model: "gpt-stream" }) })).status, 200);
      assert.equal((await send({ xfcc: xfcc(id("bob")) })).status, 403);
      assert.equal((await send({ xfcc: xfcc(id("gina")), body: chat({ stream: true }) })).status, 403);
    });

    test("x-envoy-auth-partial-body: true → 413: a cut body cannot be trusted for body conditions", async () => {
      const r = await send({ body: chat().slice(0, 30), partial: "true" });
      assert.equal(r.status, 413);
      assert.match(r.error.message, /partial body/);
    });

    test("a body larger than authz.maxBodyBytes → 413", async () => {
      const r = await send({ body: chat({ messages: [{ role: "user", content: "y".repeat(20_000) }] }) });
      assert.equal(r.status, 413);
    });

    test("no body buffered (includeRequestBodyInCheck off): 403 body_required", async () => {
      const r = await send({ body: "", partial: null });
      assert.equal(r.status, 403);
      assert.equal(r.error.code, "body_required");
    });

    test("a buffered empty body (the partial-body header, no bytes) is an empty body: 400", async () => {
      const r = await send({ body: "", partial: "false" });
      assert.equal(r.status, 400);
      assert.equal(r.error.code, "invalid_json");
    });
  });

  test("budgets: 429 with Retry-After passed back", async () => {
    const carol = xfcc(id("carol"));
    await send({ xfcc: carol });
    await send({ xfcc: carol });
    const r = await send({ xfcc: carol });
    assert.equal(r.status, 429);
    assert.match(r.headers["retry-after"]!, /^\d+$/);
  });

  test("every check is in the decision log", () => {
    const records = f.records();
    assert.equal(records.length, checks);
    const first = records[0]!;
    assert.deepEqual([first.decision, first.principal, first.path, first.requestId], ["ALLOW", id("alice"), CHAT, "7c0e1f2a-envoy"]);
    assert.ok(records.filter((r) => r.decision === "DENY").every((r) => r.status !== undefined));
  });

  test("metrics count the http transport", async () => {
    assert.match(await f.state.metrics.registry.metrics(), /edgeward_authz_checks_total\{transport="http",decision="allow"\} \d+/);
  });
});

test("ext_authz HTTP: the authorizer's own failures are a 403, never a 5xx (Envoy's failure_mode_allow would let a 5xx through)", async () => {
  const f = await startAuthz({ pathPrefix: "" });
  const base = `http://127.0.0.1:${f.server.httpAddress!.port}`;
  try {
    assert.equal((await check(base, { path: CHAT })).status, 200);
    await f.state.log.close();
    const logDown = await check(base, { path: CHAT });
    assert.equal(logDown.status, 403);
    assert.equal(logDown.error.code, "decision_log_unavailable");
    f.state.policy = { ...f.state.policy, set: null as never };
    const crashed = await check(base, { path: CHAT });
    assert.equal(crashed.status, 403);
    assert.equal(crashed.error.code, "internal_error");
  } finally {
    await f.close();
  }
});

test("ext_authz HTTP: a revoked caller is refused (401 revoked_identity) and recorded, like on the gateway's own listener", async () => {
  const f = await startAuthz({ pathPrefix: "" });
  const base = `http://127.0.0.1:${f.server.httpAddress!.port}`;
  try {
    assert.equal((await check(base, { path: CHAT })).status, 200);
    const revocations = RevocationList.parse(JSON.stringify({ spiffeIds: [{ id: id("alice"), revokedAt: "2026-11-30T10:00:00Z" }], serials: [] }));
    f.state.policy = { ...f.state.policy, revocations };
    const refused = await check(base, { path: CHAT });
    assert.equal(refused.status, 401);
    assert.equal(refused.error.code, "revoked_identity");
    assert.match(refused.error.message, /revoked at 2026-11-30T10:00:00Z/);
    const last = f.records().at(-1)!;
    assert.deepEqual([last.decision, last.status, last.principal], ["DENY", 401, id("alice")]);
    // Another caller is not affected.
    assert.equal((await check(base, { path: CHAT, xfcc: xfcc(id("bob")), body: chat({ model: "gpt-stream" }) })).status, 200);
  } finally {
    await f.close();
  }
});
