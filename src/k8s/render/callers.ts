import type { PolicyDocument } from "./policy-source.ts";
import type { Caller } from "./values.ts";

/** The callers of the gateway cannot be read from the policy; `key` is the values key to set instead. */
export class CallersError extends Error {
  readonly key = "callers";
  constructor(detail: string) {
    super(`callers: ${detail}; list the callers in the values file (callers: [{namespace, serviceAccount}])`);
    this.name = "CallersError";
  }
}

const PRINCIPAL = /^([^/]+)\/ns\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/sa\/(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Derives the gateway's callers (namespace and service account) from the ALLOW
 * policies that select the gateway: every `principals` entry of the trust domain
 * ("td/ns/<ns>/sa/<sa>", the service account may be "*") and every `namespaces`
 * entry. A rule that lets in a caller render cannot place — no `from`, a principal
 * pattern over namespaces, only IP blocks — is an error: NetworkPolicy needs to
 * know where callers run. Principals of other trust domains are federated callers
 * and are skipped (they reach the gateway from outside the cluster's policy).
 */
export function deriveCallers(documents: readonly PolicyDocument[], trustDomain: string): Caller[] {
  const found = new Map<string, Caller>();
  const add = (namespace: string, serviceAccount: string) => {
    const wildcard = found.get(`${namespace}/*`);
    if (wildcard !== undefined) return;
    if (serviceAccount === "*") for (const key of [...found.keys()]) if (key.startsWith(`${namespace}/`)) found.delete(key);
    found.set(`${namespace}/${serviceAccount}`, { namespace, serviceAccount });
  };
  for (const doc of documents) {
    if (doc.compiled.action !== "ALLOW") continue;
    (doc.spec.rules ?? []).forEach((rule, i) => {
      const where = `policy ${doc.compiled.id} rule ${i}`;
      const sources = rule?.from;
      if (sources === undefined) throw new CallersError(`${where} allows any source`);
      for (const { source } of sources) {
        // A source with requestPrincipals never matches at the gateway (no JWTs), so it admits nobody.
        if (source["requestPrincipals"] !== undefined) continue;
        const principals = source["principals"];
        const namespaces = source["namespaces"];
        if (principals !== undefined) {
          for (const raw of principals) {
            const p = raw.startsWith("spiffe://") ? raw.slice("spiffe://".length) : raw;
            const m = PRINCIPAL.exec(p);
            if (m === null) throw new CallersError(`${where}: principal "${raw}" does not name one namespace (td/ns/<ns>/sa/<sa>)`);
            if (m[1] !== trustDomain) continue;
            add(m[2]!, m[4]!);
          }
        } else if (namespaces !== undefined) {
          for (const ns of namespaces) {
            if (!NAMESPACE.test(ns)) throw new CallersError(`${where}: namespace pattern "${ns}" does not name one namespace`);
            add(ns, "*");
          }
        } else {
          throw new CallersError(`${where} has a source with neither principals nor namespaces`);
        }
      }
    });
  }
  if (found.size === 0) throw new CallersError("no ALLOW policy names a caller of this trust domain");
  return [...found.values()].sort((a, b) => (a.namespace + "/" + a.serviceAccount < b.namespace + "/" + b.serviceAccount ? -1 : 1));
}
