import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { audit } from "../../../src/k8s/audit/index.ts";
import type { AuditOptions, Finding } from "../../../src/k8s/audit/index.ts";
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
