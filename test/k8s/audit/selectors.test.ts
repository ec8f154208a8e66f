import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { calicoSelector, ciliumSelector, labelSelector } from "../../../src/k8s/audit/selectors.ts";

describe("Kubernetes label selectors", () => {
  it("matchLabels and every matchExpressions operator", () => {
    const s = labelSelector({
      matchLabels: { app: "web" },
      matchExpressions: [
        { key: "tier", operator: "In", values: ["front", "edge"] },
        { key: "env", operator: "NotIn", values: ["dev"] },
        { key: "team", operator: "Exists" },
        { key: "legacy", operator: "DoesNotExist" },
      ],
    });
    assert.equal(s.matches({ app: "web", tier: "edge", team: "a" }), true);
    assert.equal(s.matches({ app: "web", tier: "edge", team: "a", env: "dev" }), false);
    assert.equal(s.matches({ app: "web", tier: "back", team: "a" }), false);
    assert.equal(s.matches({ app: "web", tier: "edge" }), false);
    assert.equal(s.matches({ app: "web", tier: "edge", team: "a", legacy: "" }), false);
  });

  it("{} selects everything; an unknown operator selects nothing", () => {
    assert.equal(labelSelector({}).everything, true);
    assert.equal(labelSelector({ matchExpressions: [{ key: "a", operator: "Near" }] }).matches({ a: "1" }), false);
  });
});

describe("Calico selectors", () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ["app == 'web'", { app: "web" }, true],
    ["app != 'web'", {}, true],
    ["app == 'web' && tier in {'a', 'b'}", { app: "web", tier: "b" }, true],
    ["app == 'web' && tier not in {'a', 'b'}", { app: "web", tier: "b" }, false],
    ["has(tier) || app == \"db\"", { app: "db" }, true],
    ["!has(tier)", { tier: "x" }, false],
    ["!(app == 'web')", { app: "web" }, false],
    ["app.kubernetes.io/name starts with 'prom'", { "app.kubernetes.io/name": "prometheus" }, true],
    ["name ends with 'ana' && name contains 'raf'", { name: "grafana" }, true],
    ["all()", {}, true],
    ["global()", {}, false],
    ["app == ", { app: "" }, false],
  ];
  for (const [text, labels, want] of cases) {
    it(`${text} on ${JSON.stringify(labels)}`, () => assert.equal(calicoSelector(text).matches(labels), want));
  }

  it("an empty selector is all(); a broken one selects nothing and says why", () => {
    assert.equal(calicoSelector(undefined).everything, true);
    assert.match(calicoSelector("app = 'x'").error ?? "", /expected an operator/);
  });
});

describe("Cilium endpoint selectors", () => {
  it("strips source prefixes and lifts the namespace label out", () => {
    const { selector, namespace } = ciliumSelector({ matchLabels: { "k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns" } });
    assert.equal(namespace, "kube-system");
    assert.equal(selector.matches({ "k8s-app": "kube-dns" }), true);
  });
});
