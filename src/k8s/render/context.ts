import { appliesTo, type Workload as MeshWorkload } from "../../policy/index.ts";
import type { KubeObject, ObjectMeta } from "../objects.ts";
import type { PolicyDocument, PolicySource } from "./policy-source.ts";
import type { Caller, Values } from "./values.ts";

/** Names, labels and derived facts every module of render shares, computed once from the values. */
export interface RenderContext {
  readonly values: Values;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly gateway: Workload & { readonly adminPort: number; readonly metricsService: string };
  readonly runner: Workload;
  readonly helperImage: string;
  readonly callers: readonly Caller[];
  readonly policy: PolicySource;
  readonly documents: readonly PolicyDocument[];
}

export interface Workload {
  /** Deployment, ServiceAccount and Service name. */
  readonly name: string;
  readonly container: string;
  readonly image: string;
  readonly port: number;
  /** Labels of the pods (selector labels plus the rest). */
  readonly podLabels: Readonly<Record<string, string>>;
  /** The pods' selector: the Deployment, Service, NetworkPolicies and mesh policies all use it. */
  readonly selector: Readonly<Record<string, string>>;
  /** The workload's SPIFFE ID in Istio's form, without "spiffe://". */
  readonly principal: string;
}

export const PART_OF = "edgeward";
export const MANAGED_BY = "edgeward";
export const GATEWAY_NAME = "edgeward-gateway";
export const RUNNER_NAME = "edgeward-runner";

/** Annotation keys render writes. */
export const ANNOTATIONS = {
  policy: "edgeward.dev/policy",
  note: "edgeward.dev/note",
  gatewayOnly: "edgeward.dev/gateway-only",
} as const;

export function imageRef(image: string, digest: string | undefined): string {
  return digest === undefined ? image : `${image}@${digest}`;
}

export function commonLabels(component: string): Record<string, string> {
  return {
    "app.kubernetes.io/part-of": PART_OF,
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/component": component,
  };
}

/** Builds an object with the common labels; `namespace` null makes it cluster-scoped. */
export function object(
  apiVersion: string,
  kind: string,
  name: string,
  namespace: string | null,
  component: string,
  body: Record<string, unknown>,
  extra: { labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): KubeObject {
  const metadata: ObjectMeta = { name, labels: { ...commonLabels(component), ...extra.labels } };
  if (namespace !== null) metadata.namespace = namespace;
  if (extra.annotations !== undefined && Object.keys(extra.annotations).length > 0) metadata.annotations = extra.annotations;
  return { apiVersion, kind, metadata, ...body };
}

export function principal(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

export function buildContext(values: Values, policy: PolicySource, documents: readonly PolicyDocument[], callers: readonly Caller[]): RenderContext {
  const ns = values.namespace;
  const gatewaySelector = { "app.kubernetes.io/name": GATEWAY_NAME };
  const runnerSelector = { "app.kubernetes.io/name": RUNNER_NAME };
  return {
    values,
    namespace: ns,
    trustDomain: values.trustDomain,
    gateway: {
      name: GATEWAY_NAME,
      container: "gateway",
      image: imageRef(values.gateway.image, values.gateway.digest),
      port: values.gateway.port,
      adminPort: values.gateway.adminPort,
      metricsService: `${GATEWAY_NAME}-metrics`,
      selector: gatewaySelector,
      podLabels: { ...values.gateway.workloadLabels, ...commonLabels("gateway"), ...gatewaySelector },
      principal: principal(values.trustDomain, ns, GATEWAY_NAME),
    },
    runner: {
      name: RUNNER_NAME,
      container: "runner",
      image: imageRef(values.runner.image, values.runner.digest),
      port: values.runner.port,
      selector: runnerSelector,
      podLabels: { ...commonLabels("runner"), ...runnerSelector },
      principal: principal(values.trustDomain, ns, RUNNER_NAME),
    },
    helperImage: imageRef(values.spire.helperImage, values.spire.helperDigest),
    callers,
    policy,
    documents,
  };
}

/** True when a policy applies to the gateway, as the gateway itself decides it: by its namespace and its selector. */
export function selectsGateway(ctx: RenderContext, doc: PolicyDocument): boolean {
  return appliesTo(doc.compiled, gatewayWorkload(ctx));
}

/**
 * The gateway as a workload of the mesh, which decides the policies that apply to it: the pod's own labels and
 * namespace, and under Istio the mesh's namespace as the root namespace (istio-system when not set).
 */
export function gatewayWorkload(ctx: RenderContext): MeshWorkload {
  const root = ctx.values.mesh === "istio" ? ctx.values.meshNamespace : undefined;
  return { namespace: ctx.namespace, labels: { ...ctx.gateway.podLabels }, ...(root !== undefined ? { rootNamespace: root } : {}) };
}
