import type { KubeObject } from "../objects.ts";
import type { ObjectIndex } from "./object-index.ts";

export const SEVERITIES = ["low", "medium", "high", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

export const PROFILES = ["pss-restricted", "zero-trust", "llm-serving"] as const;
export type ProfileName = (typeof PROFILES)[number];

export interface Reference {
  readonly title: string;
  readonly url: string;
}

/** The same check in other scanners, where one overlaps. */
export interface Aliases {
  readonly kubeScore?: string;
  readonly polaris?: string;
  readonly kubescape?: string;
  readonly trivy?: string;
}

/**
 * Something a finding is about that is not one object of the input: a namespace
 * (which may not be in the manifests) or the cluster as a whole. `anchor` is the
 * object whose file a finding points at.
 */
export interface Subject {
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string;
  readonly anchor?: KubeObject;
}

/** What a check's `run` returns: the object, where in it to fix, and what is wrong. */
export interface CheckFinding {
  readonly object: KubeObject | Subject;
  /** JSON path of the field to fix, e.g. `spec.template.spec.containers[0].securityContext.runAsNonRoot`; "" for the object as a whole. */
  readonly path: string;
  readonly message: string;
}

/** One check: metadata people and SARIF consumers read, and a pure function over the index. */
export interface Check {
  /** Stable id, e.g. "pss.privileged"; used in `edgeward.dev/skip` and exceptions files. */
  readonly id: string;
  readonly severity: Severity;
  readonly category: string;
  readonly title: string;
  readonly remediation: string;
  /** At least one; the first is the check's help URL. */
  readonly references: readonly [Reference, ...Reference[]];
  readonly aliases: Aliases;
  readonly profiles: readonly ProfileName[];
  run(index: ObjectIndex): CheckFinding[];
}

export function isSubject(o: KubeObject | Subject): o is Subject {
  return !("apiVersion" in o && "metadata" in o);
}
