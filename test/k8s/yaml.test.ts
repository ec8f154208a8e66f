import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { objectKey, objectSource } from "../../src/k8s/objects.ts";
import type { KubeObject } from "../../src/k8s/objects.ts";
import { ManifestError, parseManifests, stringifyManifests } from "../../src/k8s/yaml.ts";

const HELM = `---
# Source: llm/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: vllm
  namespace: llm
---
# Source: llm/templates/empty.yaml
---

---
# Source: llm/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm
  namespace: llm
  labels: {app: vllm}
spec:
  template:
    spec:
      containers: [{name: vllm, image: "vllm/vllm-openai:latest"}]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Service
    metadata: {name: vllm, namespace: llm}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: flags, namespace: llm}
    data: {debug: "on"}
...
`;

describe("parseManifests", () => {
  it("reads helm template output: # Source comments and empty documents are skipped, Lists flattened", () => {
    const objects = parseManifests(HELM, "helm.yaml");
    assert.deepEqual(objects.map(objectKey), ["ServiceAccount/llm/vllm", "Deployment/llm/vllm", "Service/llm/vllm", "ConfigMap/llm/flags"]);
    assert.deepEqual(objects.map((o) => objectSource(o)), [
      { source: "helm.yaml", line: 3, index: 0 },
      { source: "helm.yaml", line: 14, index: 1 },
      { source: "helm.yaml", line: 28, index: 2 },
      { source: "helm.yaml", line: 31, index: 3 },
    ]);
    assert.deepEqual(objects[3]!["data"], { debug: "on" });
  });

  it("items of a typed list inherit its apiVersion and kind", () => {
    const objects = parseManifests("apiVersion: v1\nkind: PodList\nitems:\n  - metadata: {name: a}\n  - metadata: {name: b, namespace: x}\n", "pods.yaml");
    assert.deepEqual(objects.map((o) => [o.apiVersion, objectKey(o)]), [["v1", "Pod//a"], ["v1", "Pod/x/b"]]);
  });

  it("reads values as Kubernetes does (YAML 1.1): an unquoted yes is a boolean, so a label must be quoted", () => {
    assert.throws(() => parseManifests("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {enabled: yes}\n", "l.yaml"), /^ManifestError: l\.yaml:1: ConfigMap\/a: metadata\.labels\.enabled must be a string \(quote it\)$/);
  });

  const BAD: [string, string, RegExp][] = [
    ["a YAML syntax error", "apiVersion: v1\nkind: [\n", /^bad\.yaml:\d+: invalid YAML/],
    ["a document that is not a mapping", "---\n- a\n- b\n", /^bad\.yaml:2: a manifest document must be a mapping$/],
    ["a missing apiVersion", "---\nkind: Pod\nmetadata: {name: a}\n", /^bad\.yaml:2: missing apiVersion$/],
    ["a missing kind", "apiVersion: v1\nmetadata: {name: a}\n", /^bad\.yaml:1: missing kind$/],
    ["a missing name", "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\n", /^bad\.yaml:1: Pod: missing metadata$/],
    ["a missing name in a later document", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\n", /^bad\.yaml:5: Pod: missing metadata\.name$/],
    ["duplicate keys", "apiVersion: v1\nkind: Pod\nkind: Service\nmetadata: {name: a}\n", /^bad\.yaml:3: invalid YAML: Map keys must be unique/],
    ["a List item that is not a mapping", "apiVersion: v1\nkind: List\nitems:\n  - 3\n", /^bad\.yaml:4: List item 0 must be a mapping$/],
  ];
  for (const [name, text, message] of BAD) {
    it(`names source:line for ${name}`, () => {
      assert.throws(() => parseManifests(text, "bad.yaml"), (err: unknown) => err instanceof ManifestError && message.test(err.message));
    });
  }
});

describe("stringifyManifests", () => {
  const objects: KubeObject[] = [
    { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "b", namespace: "x" }, spec: { replicas: 1 } },
    { kind: "Deployment", apiVersion: "apps/v1", metadata: { namespace: "x", name: "a" }, spec: { replicas: 1 } },
    { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w" } },
    { apiVersion: "v1", kind: "ConfigMap", metadata: { labels: { on: "yes" }, name: "c", namespace: "x" }, data: { "b.txt": "two\nlines\n", "a.txt": "no" } },
    { apiVersion: "v1", kind: "Namespace", metadata: { name: "x" } },
  ];

  it("sorts documents by kind order then namespace and name, keys with apiVersion/kind/metadata/name first", () => {
    assert.equal(
      stringifyManifests(objects),
      `---
apiVersion: v1
kind: Namespace
metadata:
  name: x
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: c
  namespace: x
  labels:
    "on": "yes"
data:
  a.txt: "no"
  b.txt: |
    two
    lines
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: a
  namespace: x
spec:
  replicas: 1
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
  namespace: x
spec:
  replicas: 1
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
`,
    );
  });

  it("is deterministic whatever the input order, and round-trips through parseManifests", () => {
    const text = stringifyManifests(objects);
    assert.equal(stringifyManifests([...objects].reverse()), text);
    assert.equal(stringifyManifests(parseManifests(text, "x.yaml")), text);
    assert.equal(stringifyManifests([]), "");
  });
});
