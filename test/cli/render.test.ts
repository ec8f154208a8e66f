import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { objectKey } from "../../src/k8s/objects.ts";
import { parseValues, render } from "../../src/k8s/render/index.ts";
import { parseManifests, stringifyManifests } from "../../src/k8s/yaml.ts";
import { runCli } from "../support/processes.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "edgeward-render-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function expected(): string {
  const values = parseValues(readFileSync(join(ROOT, "examples/deploy.yaml"), "utf8"), "examples/deploy.yaml");
  return stringifyManifests(render(values, { text: readFileSync(join(ROOT, "examples/policy.yaml"), "utf8"), file: "examples/policy.yaml" }));
}

describe("edgeward render", () => {
  it("-o - (the default) writes one YAML stream, the same bytes on every run", async () => {
    const first = await runCli(["render", "--config", "examples/deploy.yaml"], { cwd: ROOT });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, "");
    assert.equal(first.stdout, expected());
    const second = await runCli(["render", "--config", "examples/deploy.yaml", "-o", "-"], { cwd: ROOT });
    assert.equal(second.stdout, first.stdout);
    const objects = parseManifests(first.stdout, "stdout");
    assert.ok(objects.some((o) => objectKey(o) === "Deployment/edge/edgeward-gateway"));
  });

  it("-o DIR writes one file per kind holding the same objects", async () => {
    const dir = join(tmp, "out");
    const r = await runCli(["render", "--config", join(ROOT, "examples/deploy.yaml"), "-o", dir], { cwd: tmp });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "");
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, [
      "authorizationpolicy.yaml",
      "clusterimagepolicy.yaml",
      "clusterspiffeid.yaml",
      "configmap.yaml",
      "deployment.yaml",
      "namespace.yaml",
      "networkpolicy.yaml",
      "peerauthentication.yaml",
      "persistentvolume.yaml",
      "persistentvolumeclaim.yaml",
      "service.yaml",
      "serviceaccount.yaml",
      "servicemonitor.yaml",
    ]);
    assert.match(r.stderr, new RegExp(`^wrote \\d+ objects to ${files.length} files in ${dir.replaceAll("/", "\\/")}\\n$`));
    const fromFiles = files.flatMap((f) => {
      const objects = parseManifests(readFileSync(join(dir, f), "utf8"), f);
      for (const o of objects) assert.equal(`${o.kind.toLowerCase()}.yaml`, f);
      return objects;
    });
    assert.equal(stringifyManifests(fromFiles), expected());
  });

  it("-o DIR keeps configuration to merge elsewhere (the ext_authz IstioOperator overlay) out of what kubectl applies", async () => {
    const values = join(tmp, "authz-values.yaml");
    const policy = join(tmp, "authz-policy.yaml");
    writeFileSync(values, `${readFileSync(join(ROOT, "examples/deploy.yaml"), "utf8")}\nauthz: {enabled: true}\n`);
    writeFileSync(policy, `${readFileSync(join(ROOT, "examples/policy.yaml"), "utf8")}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-forwards, namespace: edge}
spec:
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/edge/sa/edgeward-gateway"]}}]
      to: [{operation: {methods: ["POST"], paths: ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]}}]
`);
    const dir = join(tmp, "authz-out");
    const r = await runCli(["render", "--config", values, "--policy", policy, "-o", dir], { cwd: tmp });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!readdirSync(dir).includes("istiooperator.yaml"));
    assert.deepEqual(readdirSync(join(dir, "local-config")), ["istiooperator.yaml"]);
    const [overlay] = parseManifests(readFileSync(join(dir, "local-config", "istiooperator.yaml"), "utf8"), "istiooperator.yaml");
    assert.equal(overlay?.kind, "IstioOperator");
  });

  it("--policy overrides the values file's policy", async () => {
    const policyPath = join(tmp, "only-kiosk.yaml");
    writeFileSync(policyPath, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: kiosk-only, namespace: edge}
spec:
  rules: [{from: [{source: {principals: ["example.org/ns/kiosk/sa/assistant"]}}]}]
`);
    const r = await runCli(["render", "--config", "examples/deploy.yaml", "--policy", policyPath], { cwd: ROOT });
    assert.equal(r.code, 0, r.stderr);
    const names = parseManifests(r.stdout, "stdout").filter((o) => o.kind === "AuthorizationPolicy").map((o) => o.metadata.name).sort();
    assert.deepEqual(names, ["allow-nothing", "gateway-to-runner", "kiosk-only", "prometheus-scrape"]);
  });

  it("a bad values file: exit 1 and the file, line and key", async () => {
    const bad = join(tmp, "bad.yaml");
    writeFileSync(bad, readFileSync(join(ROOT, "examples/deploy.yaml"), "utf8").replace("runAsUser: 10001", "runAsUser: 0").replace("policy: policy.yaml", `policy: ${join(ROOT, "examples/policy.yaml")}`));
    const r = await runCli(["render", "--config", "bad.yaml"], { cwd: tmp });
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^render: bad\.yaml:\d+: gateway\.runAsUser: must not be 0 \(root\)\n$/);
  });

  it("an invalid policy file: exit 1 with the policy's file:line", async () => {
    const policyPath = join(tmp, "broken.yaml");
    writeFileSync(policyPath, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {actoin: ALLOW}\n");
    const r = await runCli(["render", "--config", "examples/deploy.yaml", "--policy", policyPath], { cwd: ROOT });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /broken\.yaml:4: unknown field "actoin"/);
  });

  it("usage errors exit 2", async () => {
    for (const args of [["render"], ["render", "--config", "examples/deploy.yaml", "--bogus"], ["render", "--config", "examples/deploy.yaml", "extra"]]) {
      const r = await runCli(args, { cwd: ROOT });
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /usage:\n {2}edgeward render --config VALUES\.yaml/);
    }
    const help = await runCli(["render", "--help"], { cwd: ROOT });
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage:/);
  });

  it("is listed by edgeward --help", async () => {
    const r = await runCli(["--help"], { cwd: ROOT });
    assert.match(r.stdout, /^ {2}render +render --config VALUES/m);
  });
});
