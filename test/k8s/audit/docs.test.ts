import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { it } from "node:test";
import { ALL_CHECKS } from "../../../src/k8s/audit/index.ts";

it("docs/kubernetes.md lists every check with its severity and profile", () => {
  const doc = readFileSync(new URL("../../../docs/kubernetes.md", import.meta.url), "utf8");
  const section = doc.slice(doc.indexOf("## Auditing manifests"));
  const rows = [...section.matchAll(/^\| `([a-z.-]+)` \| (\w+) \| ([\w-]+) \|/gm)].map((m) => [m[1], m[2], m[3]]);
  assert.deepEqual(rows, ALL_CHECKS.map((c) => [c.id, c.severity, c.profiles.join(", ")]));
});
