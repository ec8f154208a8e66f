import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/**
 * One ServiceAccount per workload: the account is the workload's identity (its SPIFFE
 * ID is …/ns/<namespace>/sa/<name>). Neither workload talks to the Kubernetes API,
 * so no token is mounted; Vault's agent gets a short-lived, audience-bound token
 * through a projected volume instead (see vault.ts).
 */
export function renderServiceAccounts(ctx: RenderContext): KubeObject[] {
  return [ctx.gateway, ctx.runner].map((w) =>
    object("v1", "ServiceAccount", w.name, ctx.namespace, w === ctx.gateway ? "gateway" : "runner", { automountServiceAccountToken: false }),
  );
}
