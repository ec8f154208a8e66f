import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { checkConfigFiles, ConfigError, loadConfig, parseConfig } from "../../src/config/index.ts";

const dir = mkdtempSync(join(tmpdir(), "edgeward-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const MINIMAL = `listen: 127.0.0.1:8443
admin: 127.0.0.1:9464
tls: {cert: certs/gateway.pem, key: certs/gateway.key}
trustBundles: {example.org: certs/ca.pem}
policy: policy.yaml
runners:
  - {name: local, url: "http://127.0.0.1:8000", models: [mistral-7b-instruct]}
decisionLog: data/decisions.log
`;

function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

test("the minimal documented form loads, with paths relative to the config file and defaults filled in", async () => {
  const c = await loadConfig(write("minimal.yaml", MINIMAL));
  assert.deepEqual(c.listen, { host: "127.0.0.1", port: 8443 });
  assert.deepEqual(c.admin, { host: "127.0.0.1", port: 9464 });
  assert.equal(c.tls.key, join(dir, "certs/gateway.key"));
  assert.deepEqual(c.trustBundles, { "example.org": join(dir, "certs/ca.pem") });
  assert.deepEqual(c.policy, [join(dir, "policy.yaml")]);
  assert.equal(c.decisionLog, join(dir, "data/decisions.log"));
  assert.deepEqual(c.runners, [{ name: "local", url: "http://127.0.0.1:8000", models: ["mistral-7b-instruct"], timeoutMs: 60_000, maxConnections: 64, maxQueued: 64, probeIntervalMs: 5000, embedded: null }]);
  assert.deepEqual(c.limits, {
    maxBodyBytes: 1048576, maxTokens: 1024, maxChoices: 1, bodyTimeoutMs: 30_000,
    maxConnections: 1024, maxConnectionsPerPrincipal: 128, maxInflight: 256, maxInflightPerPrincipal: 64,
  });
});

test("the committed example config is valid", async () => {
  const c = await loadConfig(new URL("../../examples/edgeward.yaml", import.meta.url).pathname);
  assert.ok(c.runners.length >= 1);
});

test("workload: the gateway's namespace, labels and root namespace; without it no namespace and no labels", () => {
  const c = parseConfig({ ...base(), workload: { namespace: "edge", labels: { app: "edge-gateway" } } }, "/x.yaml");
  assert.deepEqual(c.workload, { namespace: "edge", labels: { app: "edge-gateway" }, rootNamespace: "istio-system" });
  const rooted = parseConfig({ ...base(), workload: { namespace: "edge", rootNamespace: "mesh-root" } }, "/x.yaml");
  assert.deepEqual(rooted.workload, { namespace: "edge", labels: {}, rootNamespace: "mesh-root" });
  assert.deepEqual(parseConfig(base(), "/x.yaml").workload, { labels: {}, rootNamespace: "istio-system" });
});

test("workloadLabels, the older name of workload.labels, still works, also beside workload.namespace", () => {
  assert.deepEqual(parseConfig({ ...base(), workloadLabels: { app: "gw" } }, "/x.yaml").workload, { labels: { app: "gw" }, rootNamespace: "istio-system" });
  assert.deepEqual(
    parseConfig({ ...base(), workloadLabels: { app: "gw" }, workload: { namespace: "edge" } }, "/x.yaml").workload,
    { namespace: "edge", labels: { app: "gw" }, rootNamespace: "istio-system" },
  );
});

test("unix socket runner URLs resolve relative to the config", () => {
  const c = parseConfig({ ...base(), runners: [{ name: "e", url: "unix:/run/edgeward/runner.sock", models: ["tiny"] }] }, "/etc/edgeward/edgeward.yaml");
  assert.equal(c.runners[0]!.url, "unix:/run/edgeward/runner.sock");
});

test("a relative unix: runner URL resolves against the config file's folder, as every other path", () => {
  const c = parseConfig({ ...base(), runners: [{ name: "e", url: "unix:run/runner.sock", models: ["tiny"] }] }, "/etc/edgeward/edgeward.yaml");
  assert.equal(c.runners[0]!.url, "unix:/etc/edgeward/run/runner.sock");
});

test("an embedded runner: the gateway starts it on its unix: socket, serving its one model", () => {
  const c = parseConfig({
    ...base(), runners: [{ name: "e", url: "unix:run/e.sock", models: ["tiny"], embedded: { model: "models/tiny.gguf", threads: 2, gpu: "off" } }],
  }, "/etc/edgeward/edgeward.yaml");
  assert.deepEqual(c.runners[0]!.embedded, {
    model: "/etc/edgeward/models/tiny.gguf", socket: "/etc/edgeward/run/e.sock", name: "tiny", threads: 2, gpu: "off", startTimeoutMs: 120_000,
  });
  const embedded = (patch: Record<string, unknown>) => () =>
    parseConfig({ ...base(), runners: [{ name: "e", url: "unix:e.sock", models: ["tiny"], embedded: { model: "m.gguf" }, ...patch }] }, "/x/e.yaml");
  assert.throws(embedded({ url: "http://127.0.0.1:8000" }), /^ConfigError: config: runners\[0\]\.url: an embedded runner listens on a Unix socket/);
  assert.throws(embedded({ models: ["a", "b"] }), /config: runners\[0\]\.models: an embedded runner serves exactly one model/);
  assert.throws(embedded({ embedded: { model: "m.gguf", gpu: "tpu" } }), /config: runners\[0\]\.embedded\.gpu: /);
  assert.throws(embedded({ embedded: {} }), /config: runners\[0\]\.embedded\.model: /);
  assert.throws(embedded({ embedded: { model: "m.gguf", modle: 1 } }), /config: runners\[0\]\.embedded: unknown key\(s\) "modle"/);
});

test("a file the config names that cannot be read is reported with its key", async () => {
  const c = parseConfig({ ...base(), runners: [{ name: "e", url: "unix:e.sock", models: ["tiny"], embedded: { model: "tiny.gguf" } }] }, join(dir, "files.yaml"));
  await assert.rejects(checkConfigFiles(c), { message: `config: tls.cert: cannot read ${join(dir, "c")}: ENOENT` });
  for (const f of ["c", "k", "ca.pem", "p.yaml"]) writeFileSync(join(dir, f), "");
  await assert.rejects(checkConfigFiles(c), { message: `config: runners[0].embedded.model: cannot read ${join(dir, "tiny.gguf")}: ENOENT` });
  writeFileSync(join(dir, "tiny.gguf"), "");
  await checkConfigFiles(c);
});

function base(): Record<string, unknown> {
  return {
    listen: "127.0.0.1:8443", admin: "127.0.0.1:9464", tls: { cert: "c", key: "k" }, trustBundles: { "example.org": "ca.pem" },
    policy: "p.yaml", runners: [{ name: "local", url: "http://127.0.0.1:8000", models: ["m"] }], decisionLog: "d.log",
  };
}

const bad: [string, Record<string, unknown>, string][] = [
  ["missing listen", { listen: undefined }, "config: listen: "],
  ["bad port", { listen: "127.0.0.1:99999" }, "config: listen: port must be at most 65535"],
  ["not host:port", { admin: "9464" }, "config: admin: expected host:port"],
  ["unknown top-level key", { lsiten: "x" }, 'config: (root): unknown key(s) "lsiten"'],
  ["no trust bundle", { trustBundles: {} }, "config: trustBundles: at least one trust domain is required"],
  ["bad runner url", { runners: [{ name: "a", url: "ftp://x", models: ["m"] }] }, "config: runners[0].url: expected http(s)://host:port or unix:path/to.sock"],
  ["runner without models", { runners: [{ name: "a", url: "http://x:1", models: [] }] }, "config: runners[0].models: "],
  ["model served twice", { runners: [{ name: "a", url: "http://x:1", models: ["m"] }, { name: "b", url: "http://x:2", models: ["m"] }] }, 'config: runners[1].models: model "m" is already served by runner "a"'],
  ["duplicate runner", { runners: [{ name: "a", url: "http://x:1", models: ["m"] }, { name: "a", url: "http://x:2", models: ["n"] }] }, 'config: runners[1].name: duplicate runner name "a"'],
  ["bad duration", { runners: [{ name: "a", url: "http://x:1", models: ["m"], timeout: "soon" }] }, "config: runners[0].timeout: expected a duration"],
  ["negative limit", { limits: { maxTokens: -1 } }, "config: limits.maxTokens: "],
  ["too many choices", { limits: { maxChoices: 129 } }, "config: limits.maxChoices: "],
  ["a body timeout without a unit", { limits: { bodyTimeout: "30" } }, "config: limits.bodyTimeout: "],
  ["a negative runner queue", { runners: [{ name: "r", url: "http://127.0.0.1:1", models: ["m"], maxQueued: -1 }] }, "config: runners[0].maxQueued: "],
  ["wrong type", { policy: 42 }, "config: policy: "],
  ["neither policy nor bundle", { policy: undefined }, "config: policy: set exactly one of policy (files) and bundle (signed bundles)"],
  ["both policy and bundle", { bundle: { path: "b.tar.gz", keys: ["k.pub"], stateDir: "s" } }, "config: bundle: set exactly one of policy"],
  ["bundle without a source", { policy: undefined, bundle: { keys: ["k.pub"], stateDir: "s" } }, "config: bundle: set path, url, or both"],
  ["bundle without keys", { policy: undefined, bundle: { path: "b", keys: [], stateDir: "s" } }, "config: bundle.keys: "],
  ["bundle over plain http off loopback", { policy: undefined, bundle: { url: "http://cp.example.org/v1/bundle", keys: ["k"], stateDir: "s" } }, "config: bundle.url: plain http:// is allowed only on loopback"],
  ["workload labels under both names", { workloadLabels: { app: "a" }, workload: { labels: { app: "b" } } }, "config: workloadLabels: is the older name of workload.labels; set one of them, not both"],
  ["workload namespace not a namespace name", { workload: { namespace: "Edge_1" } }, "config: workload.namespace: expected a Kubernetes namespace name"],
  ["unknown workload key", { workload: { ns: "edge" } }, 'config: workload: unknown key(s) "ns"'],
  ["bundle url not a URL", { policy: undefined, bundle: { url: "https://[nope/", keys: ["k"], stateDir: "s" } }, "config: bundle.url: not a valid URL"],
];

test("a bundle source: paths resolve against the config, durations in ms, defaults filled in", () => {
  const c = parseConfig({ ...base(), policy: undefined, bundle: { url: "https://cp.example.org/v1/bundle", path: "incoming/b.tar.gz", keys: ["k1.pub", "/etc/k2.pub"], stateDir: "state", ca: "cp-ca.pem" } }, "/etc/edgeward/edgeward.yaml");
  assert.deepEqual(c.policy, []);
  assert.deepEqual(c.bundle, {
    path: "/etc/edgeward/incoming/b.tar.gz", url: "https://cp.example.org/v1/bundle", pollIntervalMs: 60_000, longPollMs: 0,
    keys: ["/etc/edgeward/k1.pub", "/etc/k2.pub"], stateDir: "/etc/edgeward/state", clockToleranceMs: 300_000, ca: "/etc/edgeward/cp-ca.pem",
  });
  assert.equal(parseConfig({ ...base(), policy: undefined, bundle: { url: "http://127.0.0.1:9443/v1/bundle", keys: ["k"], stateDir: "s" } }, "/x.yaml").bundle?.url, "http://127.0.0.1:9443/v1/bundle");
});

for (const [name, patch, message] of bad) {
  test(`refused with the key named: ${name}`, () => {
    assert.throws(() => parseConfig({ ...base(), ...patch }, "/x/edgeward.yaml"), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.ok(err.message.startsWith(message), `${err.message} should start with ${message}`);
      return true;
    });
  });
}

test("malformed YAML names the line; missing and oversized files are refused", async () => {
  await assert.rejects(loadConfig(write("broken.yaml", "listen: [\nadmin: x\n")), /config: .*broken\.yaml:\d+: invalid YAML/);
  await assert.rejects(loadConfig(join(dir, "absent.yaml")), /config: cannot read .*absent\.yaml: ENOENT/);
  await assert.rejects(loadConfig(write("huge.yaml", `# ${"x".repeat(1024 * 1024)}\n`)), /larger than 1 MiB/);
  await assert.rejects(loadConfig(write("dup.yaml", `${MINIMAL}listen: 127.0.0.1:1\n`)), /invalid YAML/);
  await assert.rejects(loadConfig(write("scalar.yaml", "just a string\n")), /config: \(root\): /);
});
