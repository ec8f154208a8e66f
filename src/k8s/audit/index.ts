import { objectKey, objectSource } from "../objects.ts";
import type { KubeObject } from "../objects.ts";
import { isSubject, PROFILES, severityRank } from "./check.ts";
import type { Check, CheckFinding, ProfileName, Severity, Subject } from "./check.ts";
import { exceptionMatches, globMatch, skippedIds } from "./exemptions.ts";
import type { Exception } from "./exemptions.ts";
import { asObject } from "./fields.ts";
import { namespaceOf, ObjectIndex } from "./object-index.ts";
import { checksFor } from "./profiles.ts";

export { PROFILES, SEVERITIES, severityRank } from "./check.ts";
export type { Aliases, Check, CheckFinding, ProfileName, Reference, Severity, Subject } from "./check.ts";
export { ObjectIndex } from "./object-index.ts";
export { ALL_CHECKS, checkById, checksFor, isProfileName } from "./profiles.ts";
export { ExceptionsError, parseExceptions, SKIP_ANNOTATION } from "./exemptions.ts";
export type { Exception, ObjectPattern } from "./exemptions.ts";

export interface AuditOptions {
  /** Profiles to run; all when absent or empty. */
  readonly profiles?: readonly ProfileName[];
  /** Parsed (and already validated) exceptions file entries. */
  readonly exceptions?: readonly Exception[];
  /** Istio's root namespace, where policies without a selector apply mesh-wide (default istio-system). */
  readonly meshRootNamespace?: string;
}

export interface FindingObject {
  readonly apiVersion?: string;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  /** "Kind/namespace/name", as objectKey writes it. */
  readonly key: string;
}

export interface Suppression {
  readonly by: "annotation" | "exception";
  readonly reason: string;
  /** Exceptions only: the last day the exception holds, and where it is written. */
  readonly expires?: string;
  readonly location?: string;
}

export interface Finding {
  readonly checkId: string;
  readonly severity: Severity;
  readonly category: string;
  readonly title: string;
  readonly object: FindingObject;
  /** JSON path of the field to fix inside the object; "" for the object as a whole. */
  readonly path: string;
  readonly message: string;
  /** Where the object (or, for a namespace or the cluster, the object it is anchored at) was read from. */
  readonly source?: { readonly file: string; readonly line: number };
  readonly suppressed?: Suppression;
}

export interface AuditReport {
  readonly version: 1;
  readonly profiles: readonly ProfileName[];
  /** The checks that ran. */
  readonly checks: readonly Check[];
  /** How many objects were audited. */
  readonly objects: number;
  /** Every finding, suppressed ones included, in input order. */
  readonly findings: readonly Finding[];
}

function findingObject(o: KubeObject | Subject): FindingObject {
  if (isSubject(o)) {
    return { kind: o.kind, ...(o.namespace !== undefined ? { namespace: o.namespace } : {}), name: o.name, key: `${o.kind}/${o.namespace ?? ""}/${o.name}` };
  }
  const ns = o.metadata.namespace;
  return { apiVersion: o.apiVersion, kind: o.kind, ...(typeof ns === "string" && ns !== "" ? { namespace: ns } : {}), name: o.metadata.name, key: objectKey(o) };
}

/** The object a finding belongs to, or the Namespace object a namespace subject stands for. */
function realObject(o: KubeObject | Subject, objects: readonly KubeObject[]): KubeObject | undefined {
  if (!isSubject(o)) return o;
  if (o.kind === "Namespace") return objects.find((x) => x.kind === "Namespace" && x.metadata.name === o.name);
  return undefined;
}

// Pod template metadata of a workload: `edgeward.dev/skip` works there too.
function templateAnnotations(o: KubeObject): unknown {
  const spec = asObject(o["spec"]);
  return asObject(asObject(spec?.["template"])?.["metadata"])?.["annotations"] ?? asObject(asObject(asObject(asObject(spec?.["jobTemplate"])?.["spec"])?.["template"])?.["metadata"])?.["annotations"];
}

function suppression(check: Check, f: CheckFinding, objects: readonly KubeObject[], exceptions: readonly Exception[]): Suppression | undefined {
  const real = realObject(f.object, objects);
  if (real !== undefined) {
    const skipped = skippedIds(real.metadata.annotations, templateAnnotations(real));
    if (skipped.some((id) => globMatch(id, check.id))) {
      return { by: "annotation", reason: `${real.kind} ${real.metadata.name} is annotated edgeward.dev/skip: ${skipped.join(",")}` };
    }
  }
  const target = isSubject(f.object)
    ? { kind: f.object.kind, namespaces: [f.object.namespace ?? ""], name: f.object.name }
    : { kind: f.object.kind, namespaces: [f.object.metadata.namespace ?? "", namespaceOf(f.object)], name: f.object.metadata.name };
  const e = exceptions.find((x) => exceptionMatches(x, check.id, target));
  if (e === undefined) return undefined;
  return { by: "exception", reason: e.reason, expires: e.expires, location: `${e.source}:${e.line}` };
}

/**
 * Audits manifests: builds the object index once, runs every check of the chosen
 * profiles over it, and marks findings that an annotation or an exception covers as
 * suppressed. Pure: no I/O, no clock (exception expiry is checked when the file is read).
 */
export function audit(objects: readonly KubeObject[], options: AuditOptions = {}): AuditReport {
  const profiles = options.profiles !== undefined && options.profiles.length > 0 ? [...new Set(options.profiles)] : [...PROFILES];
  const checks = checksFor(profiles);
  const index = new ObjectIndex(objects, options.meshRootNamespace !== undefined ? { meshRootNamespace: options.meshRootNamespace } : {});
  const order = new Map(objects.map((o, i) => [o, i]));
  const exceptions = options.exceptions ?? [];
  const seen = new Set<string>();
  const rows: { finding: Finding; at: number; check: number; seq: number }[] = [];
  checks.forEach((check, checkIndex) => {
    for (const f of check.run(index)) {
      const object = findingObject(f.object);
      const dedupe = JSON.stringify([check.id, object.key, f.path, f.message]);
      if (seen.has(dedupe)) continue;
      seen.add(dedupe);
      const located = isSubject(f.object) ? (realObject(f.object, objects) ?? f.object.anchor) : f.object;
      const where = located === undefined ? undefined : objectSource(located);
      const suppressed = suppression(check, f, objects, exceptions);
      rows.push({
        finding: {
          checkId: check.id,
          severity: check.severity,
          category: check.category,
          title: check.title,
          object,
          path: f.path,
          message: f.message,
          ...(where !== undefined ? { source: { file: where.source, line: where.line } } : {}),
          ...(suppressed !== undefined ? { suppressed } : {}),
        },
        at: located === undefined ? Number.MAX_SAFE_INTEGER : (order.get(located) ?? Number.MAX_SAFE_INTEGER),
        check: checkIndex,
        seq: rows.length,
      });
    }
  });
  rows.sort((a, b) => a.at - b.at || a.check - b.check || a.seq - b.seq);
  return { version: 1, profiles, checks, objects: objects.length, findings: rows.map((r) => r.finding) };
}

/** Findings that count toward the exit status: not suppressed, at or above `failOn`. */
export function failingFindings(report: AuditReport, failOn: Severity): Finding[] {
  return report.findings.filter((f) => f.suppressed === undefined && severityRank(f.severity) >= severityRank(failOn));
}
