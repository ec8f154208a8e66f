import type { CompiledPolicy, PolicySet, Workload } from "./types.ts";

/** Istio's default root namespace: a policy there applies mesh-wide. */
export const DEFAULT_ROOT_NAMESPACE = "istio-system";

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Whether a policy applies to the workload, as Istio scopes it: its namespace must be the workload's, or the root
 * namespace (mesh-wide), and every label of its selector must be among the workload's. Without a workload namespace
 * the namespace is not checked at all, so every loaded policy applies (see `policyWarnings`).
 */
export function appliesTo(policy: CompiledPolicy, workload: Workload | undefined): boolean {
  return whyNot(policy, workload) === null;
}

/** Why the policy cannot apply to the workload, or null when it applies. */
function whyNot(policy: CompiledPolicy, workload: Workload | undefined): string | null {
  if (policy.dryRun) return "it is a dry run (istio.io/dry-run: \"true\"), which Istio never enforces";
  const ns = workload?.namespace;
  const root = workload?.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  if (ns !== undefined && policy.namespace !== ns && policy.namespace !== root) {
    return `its namespace ${policy.namespace} is neither the gateway's (${ns}) nor the root namespace (${root})`;
  }
  const want = policy.matchLabels;
  if (want === null) return null;
  const labels = workload?.labels ?? NO_LABELS;
  for (const key in want) {
    if (!Object.hasOwn(labels, key) || labels[key] !== want[key]) {
      return `its selector ${formatLabels(want)} does not match the gateway's labels ${formatLabels(labels)}`;
    }
  }
  return null;
}

function formatLabels(labels: Readonly<Record<string, string>>): string {
  const entries = Object.keys(labels).map((k) => `${k}: ${labels[k]}`);
  return `{${entries.join(", ")}}`;
}

/** A policy that can never apply to the workload, and why. */
export interface InertPolicy {
  readonly policy: CompiledPolicy;
  readonly reason: string;
}

/**
 * The policies of the set that can never apply to the workload: in another namespace that is not the root (only
 * when the workload's namespace is known), or with a selector its labels cannot match (only when `labelsKnown`: a
 * CLI check may not know them).
 */
export function inertPolicies(set: PolicySet, workload: Workload | undefined, labelsKnown = true): InertPolicy[] {
  const out: InertPolicy[] = [];
  for (const policy of set.policies) {
    const reason = whyNot(policy, labelsKnown ? workload : { ...workload, labels: policy.matchLabels ?? NO_LABELS });
    if (reason !== null) out.push({ policy, reason });
  }
  return out;
}

/**
 * What an operator should know when a gateway starts with this policy and workload: that policies are not scoped
 * to a namespace when the workload's namespace is not set, and each policy that can never apply (file:line first).
 */
export function policyWarnings(set: PolicySet, workload: Workload | undefined): string[] {
  const warnings: string[] = [];
  if (workload?.namespace === undefined) {
    warnings.push(
      "workload.namespace is not set: every loaded policy applies to this gateway whatever its metadata.namespace " +
        "(Istio applies only those of the workload's namespace and of the root namespace); set workload.namespace to scope them",
    );
  }
  for (const { policy, reason } of inertPolicies(set, workload)) {
    warnings.push(`${policy.file}:${policy.line}: policy ${policy.id} never applies to this gateway: ${reason}`);
  }
  return warnings;
}
