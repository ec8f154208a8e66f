import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { audit } from "../../../src/k8s/audit/index.ts";
import type { AuditOptions, Finding, ProfileName } from "../../../src/k8s/audit/index.ts";
import type { KubeObject } from "../../../src/k8s/objects.ts";
import { parseManifests } from "../../../src/k8s/yaml.ts";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures");

export function loadFixture(path: string): KubeObject[] {
  return parseManifests(readFileSync(join(FIXTURES, path), "utf8"), path);
}

/** [check id, object key, JSON path] of each finding, in report order. */
export type Row = [string, string, string];

export function rows(findings: readonly Finding[]): Row[] {
  return findings.map((f) => [f.checkId, f.object.key, f.path]);
}

export function auditFixture(path: string, options: AuditOptions = {}): Finding[] {
  return [...audit(loadFixture(path), options).findings];
}

/** One check's failing and passing fixture, and the findings the failing one must produce exactly. */
export interface CheckCase {
  readonly id: string;
  readonly fail: string;
  readonly pass: string;
  readonly expect: readonly (readonly [key: string, path: string])[];
}

/** The findings of one check on a fixture, audited with one profile. */
export function onlyCheck(profile: ProfileName, id: string, path: string): Row[] {
  return rows(auditFixture(path, { profiles: [profile] })).filter(([checkId]) => checkId === id);
}

/** Every check of a profile has a case; each case's failing fixture yields exactly its findings, its passing one none. */
export function checkCaseTests(profile: ProfileName, cases: readonly CheckCase[], checks: readonly { id: string }[]): void {
  it("every check in the profile has a case", () => {
    assert.deepEqual(cases.map((c) => c.id).sort(), checks.map((c) => c.id).sort());
  });
  for (const c of cases) {
    describe(c.id, () => {
      it("reports exactly the expected findings on the failing fixture", () => {
        assert.deepEqual(onlyCheck(profile, c.id, c.fail), c.expect.map(([key, path]) => [c.id, key, path]));
      });
      it("reports nothing on the passing fixture", () => {
        assert.deepEqual(onlyCheck(profile, c.id, c.pass), []);
      });
    });
  }
}
