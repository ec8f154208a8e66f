import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/**
 * The namespace, enforcing the restricted Pod Security Standard (enforce, audit and
 * warn, pinned to "latest"), and opted into what the chosen mesh and admission
 * controller need: Istio sidecar injection, Linkerd injection with a deny-by-default
 * inbound policy, and Sigstore policy-controller's include label.
 */
export function renderNamespace(ctx: RenderContext): KubeObject[] {
  const labels: Record<string, string> = {
    "kubernetes.io/metadata.name": ctx.namespace,
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
  };
  const annotations: Record<string, string> = {};
  if (ctx.values.mesh === "istio") labels["istio-injection"] = "enabled";
  if (ctx.values.mesh === "linkerd") {
    annotations["linkerd.io/inject"] = "enabled";
    annotations["config.linkerd.io/default-inbound-policy"] = "deny";
  }
  if (ctx.values.admission.engine === "sigstore") labels["policy.sigstore.dev/include"] = "true";
  return [object("v1", "Namespace", ctx.namespace, null, "namespace", {}, { labels, annotations })];
}
