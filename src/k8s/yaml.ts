import { isMap, isSeq, LineCounter, parseAllDocuments, stringify } from "yaml";
import type { Node } from "yaml";
import { apiGroup, setObjectSource } from "./objects.ts";
import type { KubeObject } from "./objects.ts";

/** A manifest stream that cannot be read; the message always starts with "source:line: ". */
export class ManifestError extends Error {
  readonly source: string;
  readonly line: number;

  constructor(source: string, line: number, detail: string) {
    super(`${source}:${line}: ${detail}`);
    this.name = "ManifestError";
    this.source = source;
    this.line = line;
  }
}

// Kubernetes reads manifests as YAML 1.1 (so `yes`, `on`, `0755` are not strings);
// parse and write the same way so a value means what the API server will see.
const YAML_VERSION = "1.1" as const;

/**
 * Whether a YAML stream holds Kubernetes objects at all: a document with both `apiVersion` and `kind` (a stream that
 * does not parse counts as one, so that its error is reported). A directory of manifests often holds other YAML —
 * a Helm chart's Chart.yaml and values, a gateway config, CI files — which is no object to audit.
 */
export function holdsManifests(text: string): boolean {
  const docs = parseAllDocuments(text, { version: YAML_VERSION, uniqueKeys: true, prettyErrors: false });
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) return true;
    const contents = doc.contents as Node | null;
    if (isMap(contents) && contents.has("apiVersion") && contents.has("kind")) return true;
  }
  return false;
}

/**
 * Parses a multi-document YAML stream (kubectl manifests, `helm template` output)
 * into objects. Empty documents and comment-only documents (`# Source: …`) are
 * skipped; `List` kinds (`kind: List` or `kind: FooList` with `items`) are flattened.
 * Every object must have apiVersion, kind and metadata.name. Errors name source:line.
 * Each returned object's origin is available through `objectSource(o)`.
 */
export function parseManifests(text: string, source: string): KubeObject[] {
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { version: YAML_VERSION, lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lines.linePos(offset).line);
  const out: KubeObject[] = [];
  const docList = Array.isArray(docs) ? docs : [docs];
  for (const doc of docList) {
    const first = doc.errors[0];
    if (first !== undefined) throw new ManifestError(source, lineOf(first.pos[0]), `invalid YAML: ${firstLine(first.message)}`);
    const contents = doc.contents as Node | null;
    if (contents === null) continue;
    const line = lineOf(contents.range?.[0]);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      throw new ManifestError(source, line, `invalid YAML: ${(err as Error).message}`);
    }
    if (value === null || value === undefined) continue;
    if (!isMap(contents) || !isPlainObject(value)) throw new ManifestError(source, line, "a manifest document must be a mapping");
    const kind = value["kind"];
    if (typeof kind === "string" && kind.endsWith("List") && Array.isArray(value["items"])) {
      const itemsNode = contents.get("items", true);
      const items = value["items"] as unknown[];
      items.forEach((item, i) => {
        const itemNode = isSeq(itemsNode) ? (itemsNode.items[i] as Node | undefined) : undefined;
        const itemLine = lineOf(itemNode?.range?.[0] ?? contents.range?.[0]);
        if (!isPlainObject(item)) throw new ManifestError(source, itemLine, `${kind} item ${i} must be a mapping`);
        // Typed lists (PodList) may omit apiVersion/kind on items: inherit them.
        if (kind !== "List") {
          if (item["kind"] === undefined) item["kind"] = kind.slice(0, -"List".length);
          if (item["apiVersion"] === undefined && typeof value["apiVersion"] === "string") item["apiVersion"] = value["apiVersion"];
        }
        out.push(checkObject(item, source, itemLine, out.length));
      });
      continue;
    }
    out.push(checkObject(value, source, line, out.length));
  }
  return out;
}

function checkObject(value: Record<string, unknown>, source: string, line: number, index: number): KubeObject {
  if (typeof value["apiVersion"] !== "string" || value["apiVersion"] === "") throw new ManifestError(source, line, "missing apiVersion");
  if (typeof value["kind"] !== "string" || value["kind"] === "") throw new ManifestError(source, line, "missing kind");
  const metadata = value["metadata"];
  if (!isPlainObject(metadata)) throw new ManifestError(source, line, `${value["kind"]}: missing metadata`);
  if (typeof metadata["name"] !== "string" || metadata["name"] === "") throw new ManifestError(source, line, `${value["kind"]}: missing metadata.name`);
  if (metadata["namespace"] !== undefined && typeof metadata["namespace"] !== "string") throw new ManifestError(source, line, `${value["kind"]}/${metadata["name"]}: metadata.namespace must be a string`);
  for (const field of ["labels", "annotations"] as const) {
    const m = metadata[field];
    if (m === undefined || m === null) continue;
    if (!isPlainObject(m)) throw new ManifestError(source, line, `${value["kind"]}/${metadata["name"]}: metadata.${field} must be a mapping`);
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== "string") throw new ManifestError(source, line, `${value["kind"]}/${metadata["name"]}: metadata.${field}.${k} must be a string (quote it)`);
    }
  }
  const obj = value as KubeObject;
  setObjectSource(obj, { source, line, index });
  return obj;
}

/**
 * The order documents are written in: namespaces and policy first, then identities,
 * config, services and workloads (Helm's install order), then extension kinds. A
 * ConstraintTemplate precedes the constraints it defines. Kinds not listed follow,
 * alphabetically.
 */
export const KIND_ORDER: readonly string[] = [
  "Namespace",
  "NetworkPolicy",
  "GlobalNetworkPolicy",
  "CiliumNetworkPolicy",
  "CiliumClusterwideNetworkPolicy",
  "ResourceQuota",
  "LimitRange",
  "PodDisruptionBudget",
  "ServiceAccount",
  "Secret",
  "ConfigMap",
  "StorageClass",
  "PersistentVolume",
  "PersistentVolumeClaim",
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "Service",
  "DaemonSet",
  "Pod",
  "ReplicationController",
  "ReplicaSet",
  "Deployment",
  "HorizontalPodAutoscaler",
  "StatefulSet",
  "Job",
  "CronJob",
  "IngressClass",
  "Ingress",
  "APIService",
  "PeerAuthentication",
  "AuthorizationPolicy",
  "ClusterSPIFFEID",
  "ClusterImagePolicy",
  "ClusterPolicy",
  "Provider",
  "ConstraintTemplate",
  "ServiceMonitor",
];

function kindRank(kind: string): number {
  const i = KIND_ORDER.indexOf(kind);
  return i === -1 ? KIND_ORDER.length : i;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The document order stringifyManifests uses: kind rank, kind, apiVersion group, namespace, name. */
export function compareObjects(a: KubeObject, b: KubeObject): number {
  return (
    kindRank(a.kind) - kindRank(b.kind) ||
    compareStrings(a.kind, b.kind) ||
    compareStrings(apiGroup(a), apiGroup(b)) ||
    compareStrings(a.apiVersion, b.apiVersion) ||
    compareStrings(a.metadata.namespace ?? "", b.metadata.namespace ?? "") ||
    compareStrings(a.metadata.name, b.metadata.name)
  );
}

// Keys written before the rest (which follow alphabetically), at any depth.
const LEADING_KEYS = ["apiVersion", "kind", "metadata", "name", "namespace"];

function leadingRank(key: string): number {
  const i = LEADING_KEYS.indexOf(key);
  return i === -1 ? LEADING_KEYS.length : i;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (isPlainObject(value)) {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort((a, b) => leadingRank(a) - leadingRank(b) || compareStrings(a, b));
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = canonical(value[k]);
    return out;
  }
  return value;
}

/**
 * Writes objects as one deterministic YAML stream: documents sorted by
 * compareObjects, keys ordered (apiVersion, kind, metadata, name, namespace first,
 * then alphabetically), `---` between documents, a trailing newline. The same
 * objects always give the same bytes; the input array is not modified.
 */
export function stringifyManifests(objects: readonly KubeObject[]): string {
  const sorted = [...objects].sort(compareObjects);
  const docs = sorted.map((o) =>
    stringify(canonical(o), {
      version: YAML_VERSION,
      lineWidth: 0,
      minContentWidth: 0,
      aliasDuplicateObjects: false,
      indentSeq: true,
    }),
  );
  return docs.map((d) => `---\n${d.endsWith("\n") ? d : `${d}\n`}`).join("");
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? s;
}
