import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Client, credentials, Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import { verifyLogFile } from "../../src/decision-log/index.ts";
import type { DecisionLog } from "../../src/decision-log/index.ts";
import { bindGrpc, createGrpcServer } from "../../src/gateway/ext-authz/grpc-server.ts";
import { CHAT, POLICY, authProtos, chat, id, startAuthz, xfcc, type AuthzFixture } from "../support/authz-fixture.ts";
import { waitFor } from "../support/wait.ts";

const CHECK = "/envoy.service.auth.v3.Authorization/Check";
const { CheckRequest, CheckResponse } = authProtos();

// ---------------------------------------------------------------------------------------------------------------
// Protobuf wire format by hand (https://protobuf.dev/programming-guides/encoding/), with Envoy's field numbers as
// read in envoyproxy/envoy api/envoy/service/auth/v3/{external_auth,attribute_context}.proto and
// api/envoy/config/core/v3/address.proto. A wrong number in Edgeward's .proto makes these bytes mean something else.

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
/** A length-delimited field (wire type 2): tag = number << 3 | 2. */
const ld = (field: number, ...parts: (Buffer | string)[]) => {
  const body = Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : p)));
  return Buffer.concat([varint((field << 3) | 2), varint(body.length), body]);
};
/** A varint field (wire type 0). */
const vi = (field: number, value: number) => Buffer.concat([varint(field << 3), varint(value)]);

// CheckRequest.attributes = 1
//   AttributeContext.source = 1, destination = 2, request = 4
//     Peer.address = 1 (Address.socket_address = 1: SocketAddress.address = 2, port_value = 3), Peer.principal = 4
//     Request.http = 2
//       HttpRequest: id = 1, method = 2, headers = 3 (map entry: key = 1, value = 2), path = 4, host = 5,
//                    scheme = 6, size = 9, protocol = 10, body = 11
const BODY = chat();
const HAND_ASSEMBLED = ld(1,
  ld(1, ld(1, ld(1, ld(2, "10.1.2.3"), vi(3, 51234))), ld(4, id("alice"))),
  ld(2, ld(1, ld(1, ld(2, "10.9.8.7"), vi(3, 8000))), ld(4, "spiffe://example.org/ns/llm/sa/vllm")),
  ld(4, ld(2,
    ld(1, "12345"),
    ld(2, "POST"),
    ld(3, ld(1, "x-request-id"), ld(2, "req-hand-1")),
    ld(3, ld(1, "x-envoy-auth-partial-body"), ld(2, "false")),
    ld(4, `${CHAT}?trace=1`),
    ld(5, "vllm.llm.svc:8000"),
    ld(6, "http"),
    vi(9, Buffer.byteLength(BODY)),
    ld(10, "HTTP/1.1"),
    ld(11, BODY),
  )),
);

/** Top-level fields of a message: number → raw values (Buffer for length-delimited, number for varint). */
function fields(bytes: Buffer): Map<number, (Buffer | number)[]> {
  const out = new Map<number, (Buffer | number)[]>();
  let i = 0;
  const readVarint = () => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (i >= bytes.length) throw new Error("truncated varint");
      const b = bytes[i++]!;
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
    }
  };
  while (i < bytes.length) {
    const tag = readVarint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    let value: Buffer | number;
    if (wire === 0) value = readVarint();
    else if (wire === 2) {
      const len = readVarint();
      value = bytes.subarray(i, i + len);
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

interface Answer {
  bytes: Buffer;
  response: {
    status?: { code?: number; message?: string };
    ok_response?: { headers?: { header: { key: string; value: string }; append?: { value?: boolean } }[] };
    denied_response?: { status?: { code?: number }; headers?: { header: { key: string; value: string } }[]; body?: string };
  };
  headers: Record<string, string>;
  allowed: boolean;
  httpStatus: number | undefined;
  error: any;
}

/** Sends raw CheckRequest bytes as Envoy's gRPC client does, and decodes the answer with Envoy's field numbers. */
function checkBytes(client: Client, bytes: Uint8Array, deadlineMs = 5000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(CHECK, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(bytes), new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err) return reject(err);
      const response = CheckResponse.toObject(CheckResponse.decode(res!), { defaults: false }) as Answer["response"];
      const list = response.ok_response?.headers ?? response.denied_response?.headers ?? [];
      const headers = Object.fromEntries(list.map((h) => [h.header.key, h.header.value]));
      const body = response.denied_response?.body;
      resolve({
        bytes: res!, response, headers, allowed: (response.status?.code ?? 0) === 0 && response.ok_response !== undefined,
        httpStatus: response.denied_response?.status?.code, error: body ? JSON.parse(body).error : undefined,
      });
    });
  });
}

interface Call {
  principal?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  rawBody?: Buffer;
  /** Omit the body altogether, as Envoy does without with_request_body. */
  noBody?: boolean;
  headerMap?: boolean;
}

/** A CheckRequest as Envoy builds it (with_request_body on), encoded with protobufjs from Edgeward's .proto. */
function encode(c: Call): Uint8Array {
  const body = c.noBody ? undefined : (c.body ?? chat());
  const headers: Record<string, string> = {
    ":authority": "vllm.llm.svc:8000", ":method": c.method ?? "POST", ":path": c.path ?? CHAT, "content-type": "application/json",
    ...(body === undefined && c.rawBody === undefined ? {} : { "x-envoy-auth-partial-body": "false" }),
    ...c.headers,
  };
  const http: Record<string, unknown> = {
    id: "4711", method: c.method ?? "POST", path: c.path ?? CHAT, host: "vllm.llm.svc:8000", scheme: "http", protocol: "HTTP/2",
    size: Buffer.byteLength(c.rawBody ?? body ?? ""),
    ...(c.headerMap ? { header_map: { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v, "latin1") })) } } : { headers }),
    ...(c.rawBody !== undefined ? { raw_body: c.rawBody } : body === undefined ? {} : { body }),
  };
  return CheckRequest.encode(CheckRequest.fromObject({
    attributes: {
      source: { address: { socket_address: { address: "10.1.2.3", port_value: 51234 } }, ...(c.principal === undefined ? {} : { principal: c.principal }) },
      destination: { address: { socket_address: { address: "10.9.8.7", port_value: 8000 } }, principal: "spiffe://example.org/ns/llm/sa/vllm" },
      request: { time: { seconds: 1_760_000_000 }, http },
    },
  })).finish();
}

describe("ext_authz gRPC: the wire format is Envoy's", () => {
  test("the hand-assembled CheckRequest decodes with Edgeward's .proto into the fields Envoy meant", () => {
    const m = CheckRequest.toObject(CheckRequest.decode(HAND_ASSEMBLED), { longs: Number }) as any;
    const http = m.attributes.request.http;
    assert.equal(m.attributes.source.principal, id("alice"));
    assert.equal(m.attributes.source.address.socket_address.address, "10.1.2.3");
    assert.equal(m.attributes.source.address.socket_address.port_value, 51234);
    assert.equal(m.attributes.destination.address.socket_address.port_value, 8000);
    assert.deepEqual(
      [http.id, http.method, http.path, http.host, http.scheme, http.size, http.protocol, http.body],
      ["12345", "POST", `${CHAT}?trace=1`, "vllm.llm.svc:8000", "http", Buffer.byteLength(BODY), "HTTP/1.1", BODY],
    );
    assert.deepEqual(http.headers, { "x-request-id": "req-hand-1", "x-envoy-auth-partial-body": "false" });
  });

  test("and protobufjs encodes the same message to the same bytes (fields in number order, as Envoy writes them)", () => {
    const m = CheckRequest.decode(HAND_ASSEMBLED);
    assert.equal(Buffer.from(CheckRequest.encode(m).finish()).toString("hex"), HAND_ASSEMBLED.toString("hex"));
  });
});

describe("ext_authz gRPC service", () => {
  let f: AuthzFixture;
  let client: Client;
  let checks = 0;
  const check = (c: Call, deadlineMs?: number) => {
    checks++;
    return checkBytes(client, encode(c), deadlineMs);
  };

  before(async () => {
    f = await startAuthz();
    client = new Client(`127.0.0.1:${f.server.grpcAddress!.port}`, credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await f.close();
  });

  test("the hand-assembled bytes are allowed, and the answer's bytes carry ok_response = 3 with the headers to add", async () => {
    checks++;
    const a = await checkBytes(client, HAND_ASSEMBLED);
    assert.equal(a.allowed, true, JSON.stringify(a.response));
    const top = fields(a.bytes);
    assert.ok(top.has(3), "ok_response is field 3");
    assert.ok(!top.has(2), "no denied_response");
    const status = top.get(1)?.[0];
    assert.ok(status === undefined || !fields(status as Buffer).has(1) || fields(status as Buffer).get(1)![0] === 0, "google.rpc.Status.code = 1 is OK (0)");
    const options = fields(top.get(3)![0] as Buffer).get(2)!.map((o) => fields(o as Buffer));
    const added = Object.fromEntries(options.map((o) => {
      const hv = fields(o.get(1)![0] as Buffer);
      // HeaderValueOption.append = 2 is a BoolValue { value = 1 }: present and false, so Envoy overwrites.
      assert.deepEqual(fields(o.get(2)![0] as Buffer).get(1) ?? [0], [0]);
      return [(hv.get(1)![0] as Buffer).toString(), (hv.get(2)![0] as Buffer).toString()];
    }));
    assert.deepEqual(added, { "x-edgeward-decision": "allow", "x-edgeward-principal": id("alice"), "x-edgeward-request-id": "req-hand-1" });
  });

  test("a policy denial: status PERMISSION_DENIED (7), denied_response = 2 with HTTP 403 and an OpenAI-style body", async () => {
    const a = await check({ principal: id("mallory") });
    assert.equal(a.allowed, false);
    assert.equal(a.response.status?.code, 7);
    assert.equal(a.httpStatus, 403);
    assert.equal(a.error.code, "policy_denied");
    assert.match(a.error.message, /no ALLOW policy matched/);
    assert.equal(a.headers["content-type"], "application/json");
    assert.equal(a.headers["x-edgeward-decision"], "deny");
    // By hand: denied_response = 2 → HttpStatus status = 1 → code = 1 (varint 403); body = 3.
    const denied = fields(fields(a.bytes).get(2)![0] as Buffer);
    assert.deepEqual(fields(denied.get(1)![0] as Buffer).get(1), [403]);
    assert.equal(JSON.parse((denied.get(3)![0] as Buffer).toString()).error.code, "policy_denied");
  });

  test("a DENY policy on a header wins over the ALLOW", async () => {
    const a = await check({ principal: id("alice"), headers: { "x-debug": "true" } });
    assert.equal(a.httpStatus, 403);
    assert.match(a.error.message, /DENY policy test\/no-debug/);
  });

  describe("body conditions (includeRequestBodyInCheck)", () => {
    test("the model: bob may use gpt-stream only", async () => {
      assert.equal((await check({ principal: id("bob"), body: chat({ model: "gpt-stream" }) })).allowed, true);
      const a = await check({ principal: id("bob"), body: chat({ model: "mistral-7b-instruct" }) });
      assert.equal(a.httpStatus, 403);
      assert.equal(a.error.code, "policy_denied");
    });

    test("stream and max_tokens in CEL: gina without streams, at most 64 tokens", async () => {
      assert.equal((await check({ principal: id("gina"), body: chat({ max_tokens: 64 }) })).allowed, true);
      assert.equal((await check({ principal: id("gina"), body: chat({ max_tokens: 64, stream: true }) })).httpStatus, 403);
      assert.equal((await check({ principal: id("gina"), body: chat({ max_tokens: 65 }) })).httpStatus, 403);
    });

    test("raw_body (pack_as_bytes) is read like body", async () => {
      assert.equal((await check({ principal: id("bob"), rawBody: Buffer.from(chat({ model: "gpt-stream" })) })).allowed, true);
      assert.equal((await check({ principal: id("bob"), rawBody: Buffer.from(chat()) })).httpStatus, 403);
    });

    test("a body that is not the OpenAI shape is a 400 naming the field", async () => {
      const a = await check({ principal: id("alice"), body: JSON.stringify({ model: "m", messages: "hi", max_tokens: 1 }) });
      assert.equal(a.httpStatus, 400);
      assert.match(a.error.message, /^messages: /);
      assert.equal((await check({ principal: id("alice"), body: "{not json" })).error.code, "invalid_json");
    });

    test("max_tokens is required (Edgeward cannot cap what it does not relay) and capped", async () => {
      const missing = await check({ principal: id("alice"), body: chat({ max_tokens: undefined }) });
      assert.equal(missing.httpStatus, 400);
      assert.equal(missing.error.code, "max_tokens_required");
      const over = await check({ principal: id("alice"), body: chat({ max_tokens: 513 }) });
      assert.equal(over.httpStatus, 400);
      assert.match(over.error.message, /max_tokens 513 exceeds the limit of 512/);
      assert.equal((await check({ principal: id("alice"), body: JSON.stringify({ model: "e", input: "hi" }), path: "/v1/embeddings" })).allowed, true, "embeddings have no max_tokens");
    });

    test("no body sent with the check: denied (body conditions cannot be checked), telling how to fix it", async () => {
      const a = await check({ principal: id("alice"), noBody: true });
      assert.equal(a.httpStatus, 403);
      assert.equal(a.error.code, "body_required");
      assert.match(a.error.message, /includeRequestBodyInCheck/);
    });

    test("a partial body (x-envoy-auth-partial-body: true) is refused: 413", async () => {
      const a = await check({ principal: id("alice"), body: chat().slice(0, 40), headers: { "x-envoy-auth-partial-body": "true" } });
      assert.equal(a.httpStatus, 413);
      assert.match(a.error.message, /partial body/);
    });

    test("a body over authz.maxBodyBytes is refused: 413", async () => {
      const a = await check({ principal: id("alice"), body: chat({ messages: [{ role: "user", content: "x".repeat(9000) }] }) });
      assert.equal(a.httpStatus, 413);
      assert.match(a.error.message, /8192-byte limit/);
    });

    test("a GET that carries no body is decided without one", async () => {
      assert.equal((await check({ principal: id("alice"), method: "GET", path: "/v1/models", noBody: true })).allowed, true);
    });
  });

  describe("principal", () => {
    test("source.principal must be a SPIFFE ID", async () => {
      const a = await check({ principal: "example.org/ns/apps/sa/alice" });
      assert.equal(a.httpStatus, 401);
      assert.equal(a.response.status?.code, 16, "UNAUTHENTICATED");
      assert.equal(a.error.code, "invalid_client_identity");
      assert.match(a.error.message, /not a SPIFFE ID \(spiffeid: scheme is missing or invalid\)/);
      assert.equal((await check({ principal: "spiffe://Example.org/ns/apps/sa/alice" })).httpStatus, 401);
    });

    test("a missing principal (no client certificate) is a 401", async () => {
      const a = await check({});
      assert.equal(a.httpStatus, 401);
      assert.match(a.error.message, /no source principal/);
    });
  });

  describe("budgets", () => {
    test("requests per minute: carol's third request is a 429 with Retry-After", async () => {
      assert.equal((await check({ principal: id("carol") })).allowed, true);
      assert.equal((await check({ principal: id("carol") })).allowed, true);
      const third = await check({ principal: id("carol") });
      assert.equal(third.httpStatus, 429);
      assert.equal(third.error.code, "rate_limit_exceeded");
      assert.match(third.headers["retry-after"]!, /^\d+$/);
    });

    test("tokens: max_tokens plus the prompt estimate is reserved; what does not fit is refused", async () => {
      // dave: tokensPerMinute 10. "hi" is 1 prompt token, + 3 framing the message and 3 priming the answer: 7 + 2 = 9
      // reserved, 1 left.
      assert.equal((await check({ principal: id("dave"), body: chat({ max_tokens: 2 }) })).allowed, true);
      const second = await check({ principal: id("dave"), body: chat({ max_tokens: 2 }) });
      assert.equal(second.httpStatus, 429);
      assert.match(second.error.message, /reserves 9 tokens/);
      const never = await check({ principal: id("dave"), body: chat({ max_tokens: 50 }) });
      assert.equal(never.httpStatus, 400);
      assert.equal(never.error.code, "reservation_exceeds_budget");
    });
  });

  test("every check so far is in the decision log, allowed and denied alike, with the status answered", async () => {
    const records = f.records();
    assert.equal(records.length, checks);
    const hand = records.find((r) => r.requestId === "req-hand-1")!;
    assert.deepEqual(
      [hand.decision, hand.principal, hand.method, hand.path, hand.model, hand.policy, hand.status],
      ["ALLOW", id("alice"), "POST", CHAT, "mistral-7b-instruct", "test/alice", undefined],
    );
    const denied = records.filter((r) => r.decision === "DENY");
    assert.ok(denied.length > 10);
    assert.ok(denied.every((r) => typeof r.status === "number"));
    assert.ok(records.some((r) => r.status === 401 && r.principal === null));
    assert.ok(records.some((r) => r.status === 429 && r.principal === id("carol")));
    assert.match(records[0]!.revision!, /^sha256:/);
  });

  test("metrics: edgeward_authz_checks_total by transport and decision, and the check duration", async () => {
    const text = await f.state.metrics.registry.metrics();
    assert.match(text, /edgeward_authz_checks_total\{transport="grpc",decision="allow"\} \d+/);
    assert.match(text, /edgeward_authz_checks_total\{transport="grpc",decision="deny"\} \d+/);
    assert.match(text, /edgeward_authz_check_duration_seconds_count\{transport="grpc"\} \d+/);
  });
});

describe("ext_authz gRPC: principal from XFCC, raw headers", () => {
  let f: AuthzFixture;
  let client: Client;
  before(async () => {
    f = await startAuthz({ principalFrom: "xfcc" });
    client = new Client(`127.0.0.1:${f.server.grpcAddress!.port}`, credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await f.close();
  });

  test("the caller is the last XFCC element's URI, whatever source.principal says", async () => {
    const forged = `URI=${id("alice")}`;
    const a = await checkBytes(client, encode({ principal: id("alice"), headers: { "x-forwarded-client-cert": `${forged},${xfcc(id("mallory"))}` } }));
    assert.equal(a.httpStatus, 403, "mallory, not the forged alice");
    assert.equal((await checkBytes(client, encode({ headers: { "x-forwarded-client-cert": xfcc(id("alice")) } }))).allowed, true);
  });

  test("several identities, or none, are refused with the reason", async () => {
    const several = await checkBytes(client, encode({ headers: { "x-forwarded-client-cert": `URI=${id("alice")};URI=${id("bob")}` } }));
    assert.equal(several.httpStatus, 401);
    assert.match(several.error.message, /exactly one identity/);
    const none = await checkBytes(client, encode({}));
    assert.equal(none.httpStatus, 401);
    assert.match(none.error.message, /no x-forwarded-client-cert header/);
  });

  test("header_map (encode_raw_headers) is read like headers", async () => {
    const a = await checkBytes(client, encode({ headerMap: true, headers: { "x-forwarded-client-cert": xfcc(id("alice")) } }));
    assert.equal(a.allowed, true, JSON.stringify(a.response));
  });
});

describe("ext_authz gRPC: internal errors are denials, never gRPC errors", () => {
  test("a decision log that cannot be written: denied_response 503, status PERMISSION_DENIED, gRPC OK", async () => {
    const f = await startAuthz();
    const client = new Client(`127.0.0.1:${f.server.grpcAddress!.port}`, credentials.createInsecure());
    try {
      assert.equal((await checkBytes(client, encode({ principal: id("alice") }))).allowed, true);
      await f.state.log.close();
      const a = await checkBytes(client, encode({ principal: id("alice") }));
      assert.equal(a.allowed, false);
      assert.equal(a.response.status?.code, 7);
      assert.equal(a.httpStatus, 503);
      assert.equal(a.error.code, "decision_log_unavailable");
      const text = await f.state.metrics.registry.metrics();
      assert.match(text, /edgeward_denials_total\{reason="log"\} 1/);
      assert.equal((await verifyLogFile(f.state.config.decisionLog)).ok, true);
    } finally {
      client.close();
      await f.close();
    }
  });

  test("an exception inside the check: denied_response 500 internal_error, and the denial is recorded", async () => {
    const f = await startAuthz();
    const client = new Client(`127.0.0.1:${f.server.grpcAddress!.port}`, credentials.createInsecure());
    try {
      f.state.policy = { ...f.state.policy, set: null as never };
      const a = await checkBytes(client, encode({ principal: id("alice") }));
      assert.equal(a.response.status?.code, 7);
      assert.equal(a.httpStatus, 500);
      assert.equal(a.error.code, "internal_error");
      assert.match(await f.state.metrics.registry.metrics(), /edgeward_authz_checks_total\{transport="grpc",decision="error"\} 1/);
      const [record] = f.records();
      assert.deepEqual([record!.decision, record!.status, record!.principal], ["DENY", 500, id("alice")]);
    } finally {
      client.close();
      await f.close();
    }
  });

  test("a check that cannot be decided before the deadline is denied before it, not left to time out", async () => {
    const f = await startAuthz();
    // The service under a timer the test fires itself: no real waiting, and nothing that a slow machine can miss.
    const scheduled: { deny: () => void; delayMs: number; cancelled: boolean }[] = [];
    const server = createGrpcServer(f.server.authorizer, {
      principalFrom: "source", logger: f.state.logger,
      atDeadline: (deny, delayMs) => {
        const entry = { deny, delayMs, cancelled: false };
        scheduled.push(entry);
        return () => (entry.cancelled = true);
      },
    }, 4 * 1024 * 1024);
    const port = await bindGrpc(server, { host: "127.0.0.1", port: 0 });
    const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
    const log = f.state.log;
    try {
      // A decided check cancels its deny.
      assert.equal((await checkBytes(client, encode({ principal: id("alice") }))).allowed, true);
      assert.equal(scheduled.length, 1);
      assert.equal(scheduled[0]!.cancelled, true);

      // A decision log whose fsync never completes: the check cannot be decided.
      f.state.log = { refusal: null, append: () => new Promise(() => undefined) } as unknown as DecisionLog;
      const DEADLINE_MS = 60_000;
      const pending = checkBytes(client, encode({ principal: id("alice") }), DEADLINE_MS);
      await waitFor("the check to arm its deny", () => scheduled.length === 2);
      const { deny, delayMs, cancelled } = scheduled[1]!;
      // Due at the margin before the deadline (an eighth of the budget, 5 to 25 ms: here 25 ms), less the time the call
      // took to arrive, which is allowed, generously, up to half the budget.
      assert.ok(delayMs <= DEADLINE_MS - 25 && delayMs > DEADLINE_MS / 2, `deny due after ${delayMs} ms of a ${DEADLINE_MS} ms deadline`);
      assert.equal(cancelled, false);
      deny();
      const a = await pending;
      assert.equal(a.allowed, false);
      assert.equal(a.httpStatus, 503);
      assert.match(a.error.message, /before the proxy's deadline/);
    } finally {
      f.state.log = log;
      client.close();
      server.forceShutdown();
      await f.close();
    }
  });

  test("bytes that are not a CheckRequest are a gRPC error (Envoy fails closed on it), and the server stays up", async () => {
    const f = await startAuthz();
    const client = new Client(`127.0.0.1:${f.server.grpcAddress!.port}`, credentials.createInsecure());
    try {
      await assert.rejects(checkBytes(client, Buffer.from([0x0a, 0xff, 0xff, 0xff])), (err: { code: number }) => err.code !== GrpcStatus.OK);
      assert.equal((await checkBytes(client, encode({ principal: id("alice") }))).allowed, true);
    } finally {
      client.close();
      await f.close();
    }
  });
});

test("the fixture policy is the gateway's own test policy (same decisions in both modes)", () => {
  assert.match(POLICY, /test\/gateway\/fixtures\/policy\.yaml$/);
});
