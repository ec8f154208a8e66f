import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { ConfigError } from "../../src/config/index.ts";
import { loadControlPlaneConfig, parseControlPlaneConfig, type ControlPlaneConfigInput } from "../../src/controlplane/config.ts";

const EXAMPLE = fileURLToPath(new URL("../../examples/controlplane.yaml", import.meta.url));

const minimal: ControlPlaneConfigInput = {
  listen: "127.0.0.1:9443",
  tls: { cert: "cp.pem", key: "cp.key" },
  trustBundles: { "example.org": "ca.pem" },
  storage: { sqlite: "cp.db" },
  operators: { tokenFile: "op.token" },
  groups: [{ name: "kiosks", principals: ["spiffe://example.org/edge/node/*"] }],
  bundles: { keys: ["release.pub"] },
};

function refused(patch: Record<string, unknown>): ConfigError {
  try {
    parseControlPlaneConfig({ ...minimal, ...patch }, "/etc/edgeward/cp.yaml");
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error;
  }
  assert.fail("expected a ConfigError");
}

test("the example configuration loads, paths resolved against its directory", async () => {
  const c = await loadControlPlaneConfig(EXAMPLE);
  const dir = EXAMPLE.replace(/controlplane\.yaml$/, "");
  assert.deepEqual(c.listen, { host: "127.0.0.1", port: 9443 });
  assert.deepEqual(c.storage, { kind: "sqlite", path: `${dir}data/controlplane.db` });
  assert.equal(c.operators.tokenFile, `${dir}secrets/operator.token`);
  assert.deepEqual(c.groups.map((g) => g.name), ["kiosks", "labs"]);
  assert.deepEqual(c.bundles, { keys: [`${dir}keys/release.pub`], releaseKey: `${dir}keys/release.key`, revocationValidForSeconds: null });
  assert.equal(c.analysis.clockSkewMs, 300_000);
});

test("defaults and conversions", () => {
  const c = parseControlPlaneConfig({ ...minimal, storage: { postgres: { urlFile: "pg.url" } }, bundles: { keys: ["k.pub"], revocationValidFor: "12h" } }, "/etc/edgeward/cp.yaml");
  assert.deepEqual(c.storage, { kind: "postgres", url: null, urlFile: "/etc/edgeward/pg.url" });
  assert.equal(c.bundles.revocationValidForSeconds, 43_200);
  assert.equal(c.analysis.clockSkewMs, 300_000);
  assert.equal(c.logLevel, "info");
  assert.deepEqual(c.operators, { principals: [], tokenFile: "/etc/edgeward/op.token" });
});

test("every refusal names its key", () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ listen: "9443" }, "listen", /host:port/],
    [{ storage: {} }, "storage", /exactly one of sqlite/],
    [{ storage: { sqlite: "a.db", postgres: { url: "postgres://x" } } }, "storage", /exactly one/],
    [{ storage: { postgres: { url: "mysql://x" } } }, "storage.postgres.url", /postgres:\/\//],
    [{ storage: { postgres: {} } }, "storage.postgres", /exactly one of url and urlFile/],
    [{ operators: {} }, "operators", /at least one operator/],
    [{ operators: { principals: ["spiffe://example.org/ops/*/admin"] } }, "operators.principals[0]", /one leading or trailing \*/],
    [{ groups: [] }, "groups", /./],
    [{ groups: [{ name: "a", principals: ["example.org/edge/*"] }] }, "groups[0].principals[0]", /spiffe:\/\//],
    [{ groups: [{ name: "a", principals: ["*"] }, { name: "a", principals: ["*"] }] }, "groups[1].name", /duplicate group name "a"/],
    [{ groups: [{ name: "no spaces", principals: ["*"] }] }, "groups[0].name", /letters, digits/],
    [{ bundles: { keys: [] } }, "bundles.keys", /./],
    [{ bundles: { keys: ["k"], revocationValidFor: "1d" } }, "bundles.revocationValidFor", /duration/],
    [{ bundles: { keys: ["k"], revocationValidFor: "10ms" } }, "bundles.revocationValidFor", /at least 1s/],
    [{ analysis: { clockSkew: "soon" } }, "analysis.clockSkew", /duration/],
    [{ extra: true }, "(root)", /unknown key\(s\) "extra"/],
  ];
  for (const [patch, key, message] of cases) {
    const error = refused(patch);
    assert.equal(error.key, key, JSON.stringify(patch));
    assert.match(error.message, message, JSON.stringify(patch));
  }
});
