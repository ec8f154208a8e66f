import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { DecisionLog, type DecisionRecord } from "../../src/decision-log/index.ts";
import { Budgets } from "../../src/budget/index.ts";
import { parseConfig, type AuthzConfig } from "../../src/config/index.ts";
import { AuthzServer, PROTO_DIR, type AuthzState } from "../../src/gateway/ext-authz/index.ts";
import { loadPolicy } from "../../src/gateway/policy-source.ts";
import { createGatewayMetrics, createLogger } from "../../src/telemetry/index.ts";

export const POLICY = fileURLToPath(new URL("../gateway/fixtures/policy.yaml", import.meta.url));
export const TD = "example.org";
export const id = (sa: string) => `spiffe://${TD}/ns/apps/sa/${sa}`;
export const CHAT = "/v1/chat/completions";
export const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "mistral-7b-instruct", messages: [{ role: "user", content: "hi" }], max_tokens: 16, ...extra });

/** What the sidecar appends for its peer, as Istio's inbound sidecar writes it. */
export const xfcc = (uri: string) =>
  `By=spiffe://${TD}/ns/llm/sa/vllm;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";URI=${uri}`;

export interface AuthzFixture {
  dir: string;
  state: AuthzState;
  server: AuthzServer;
  /** Every record in the decision log (after waiting for it to be durable). */
  records(): DecisionRecord[];
  close(): Promise<void>;
}

/** The ext_authz listeners on 127.0.0.1 over a fresh state: the gateway's test policy, a new decision log. */
export async function startAuthz(authz: Partial<AuthzConfig> = {}, limits: Record<string, unknown> = {}): Promise<AuthzFixture> {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-authz-"));
  const config = parseConfig({
    listen: "127.0.0.1:0", admin: "127.0.0.1:0", tls: { cert: "unused.pem", key: "unused.key" },
    trustBundles: { [TD]: "unused.pem" }, policy: POLICY,
    runners: [{ name: "unused", url: "http://127.0.0.1:9", models: ["mistral-7b-instruct"] }],
    decisionLog: join(dir, "decisions.log"), limits: { maxTokens: 512, ...limits },
    authz: { grpc: "127.0.0.1:0", http: "127.0.0.1:0" },
  }, join(dir, "edgeward.yaml"));
  const authzConfig: AuthzConfig = { ...config.authz!, ...authz };
  const state: AuthzState = {
    config: { ...config, authz: authzConfig }, policy: await loadPolicy(config.policy), ladder: null,
    log: await DecisionLog.open(config.decisionLog), budgets: new Budgets(), metrics: createGatewayMetrics(),
    logger: createLogger("silent"), clock: Date.now,
  };
  const server = await AuthzServer.start(state, authzConfig);
  return {
    dir, state, server,
    records: () => readFileSync(config.decisionLog, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as DecisionRecord),
    async close() {
      await server.close(0);
      await state.log.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The CheckRequest / CheckResponse types from Edgeward's .proto, for encoding requests as Envoy would. */
export function authProtos(): { CheckRequest: protobuf.Type; CheckResponse: protobuf.Type } {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  root.loadSync("envoy/service/auth/v3/external_auth.proto", { keepCase: true });
  return {
    CheckRequest: root.lookupType("envoy.service.auth.v3.CheckRequest"),
    CheckResponse: root.lookupType("envoy.service.auth.v3.CheckResponse"),
  };
}
