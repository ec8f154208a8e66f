import type { KubeObject } from "../objects.ts";
import { renderAdmission } from "./admission.ts";
import { checkGatewayAdmitted, isGatewayItself, renderAuthz } from "./authz.ts";
import { CallersError, deriveCallers } from "./callers.ts";
import { buildContext, selectsGateway } from "./context.ts";
import { renderFalco } from "./falco.ts";
import { renderGatewayConfig } from "./gateway-config.ts";
import { renderIstio } from "./istio.ts";
import { renderLinkerd } from "./linkerd.ts";
import { renderMonitoring } from "./monitoring.ts";
import { renderNamespace } from "./namespace.ts";
import { renderNetworkPolicies } from "./network-policy.ts";
import { readPolicyDocuments } from "./policy-source.ts";
import type { PolicySource } from "./policy-source.ts";
import { renderServiceAccounts } from "./service-accounts.ts";
import { renderServices } from "./services.ts";
import { renderSpire } from "./spire.ts";
import type { Values } from "./values.ts";
import { renderWorkloads } from "./workloads.ts";

export { AdmissionError, patternCovers } from "./admission.ts";
export { AUTHZ_PROVIDER, AuthzError } from "./authz.ts";
export { CallersError, deriveCallers } from "./callers.ts";
export { allowList } from "./network-policy.ts";
export type { Allow, Peer } from "./network-policy.ts";
export type { PolicySource } from "./policy-source.ts";
export { parseValues, validateValues, ValuesError, valuesSchema } from "./values.ts";
export type { AuthzValues, Caller, Signer, Values, ValuesInput } from "./values.ts";

/**
 * Renders the whole deployment from the values and the gateway's policy file. Pure:
 * the same inputs give the same objects (write them with stringifyManifests for the
 * same bytes). Throws PolicyError for an invalid policy file, CallersError when the
 * callers must be listed by hand, AdmissionError when an image would be refused,
 * AuthzError when the runner's ext_authz checks would refuse every forwarded request.
 */
export function render(values: Values, policy: PolicySource): KubeObject[] {
  const { set, documents } = readPolicyDocuments(policy);
  const base = buildContext(values, policy, documents, []);
  // Callers come from the policies the gateway applies to itself; a policy for another workload admits nobody here.
  const callers = values.callers ?? deriveCallers(documents.filter((d) => selectsGateway(base, d)), values.trustDomain).filter((c) => !isGatewayItself(base, c));
  if (callers.length === 0) throw new CallersError("no ALLOW policy names a caller of this trust domain other than the gateway itself");
  const ctx = { ...base, callers };
  checkGatewayAdmitted(ctx, set);
  return [
    ...renderNamespace(ctx),
    ...renderServiceAccounts(ctx),
    ...renderGatewayConfig(ctx),
    ...renderWorkloads(ctx),
    ...renderServices(ctx),
    ...renderNetworkPolicies(ctx),
    ...renderIstio(ctx),
    ...renderAuthz(ctx),
    ...renderLinkerd(ctx),
    ...renderSpire(ctx),
    ...renderAdmission(ctx),
    ...renderMonitoring(ctx),
    ...renderFalco(ctx),
  ];
}
