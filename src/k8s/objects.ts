/**
 * The minimal shape of a Kubernetes object, shared by `edgeward render` (which
 * produces them) and `edgeward audit` (which reads them). Everything beyond
 * apiVersion/kind/metadata is left open: each producer or check narrows what it
 * needs.
 */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/**
 * A stable identity for an object: "kind/namespace/name". Cluster-scoped objects
 * (and namespaced objects written without a namespace) have an empty namespace
 * segment, e.g. "Namespace//edgeward".
 */
export function objectKey(o: KubeObject): string {
  return `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

/** The API group of an object ("" for the core group), e.g. "apps", "networking.k8s.io". */
export function apiGroup(o: Pick<KubeObject, "apiVersion">): string {
  const slash = o.apiVersion.indexOf("/");
  return slash === -1 ? "" : o.apiVersion.slice(0, slash);
}

/** Where a parsed object came from: the source name, the 1-based line its document starts on, and its 0-based position in the stream. */
export interface ObjectSource {
  source: string;
  line: number;
  index: number;
}

const sources = new WeakMap<KubeObject, ObjectSource>();

/** Records where `o` was read from (used by parseManifests). */
export function setObjectSource(o: KubeObject, where: ObjectSource): void {
  sources.set(o, where);
}

/** Where `o` was read from, when it came from parseManifests; undefined for objects built in code. */
export function objectSource(o: KubeObject): ObjectSource | undefined {
  return sources.get(o);
}
