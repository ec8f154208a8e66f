import type { KubeObject } from "../objects.ts";
import { ANNOTATIONS, object, principal, selectsGateway } from "./context.ts";
import type { RenderContext } from "./context.ts";
import type { PolicyDocument, PolicyRule } from "./policy-source.ts";

/**
 * The Istio layer. The gateway terminates mTLS itself, so inside the mesh its port
 * carries TLS that the sidecar cannot read: Istio sees who connects (the peer's
 * SPIFFE ID from the mesh's own mTLS, its namespace and address) and on which port,
 * but not the HTTP request. Each ALLOW or DENY policy of the policy file becomes an
 * Istio AuthorizationPolicy on the gateway keeping exactly what Istio can check on
 * that connection; everything else — methods, paths, hosts, headers, and Edgeward's
 * models, CEL conditions, limits and essential marks — stays with the gateway, and
 * an annotation on each object says what was left to it.
 *
 *  - ALLOW rules keep their sources and ports and drop the rest, so Istio admits
 *    at most who the gateway could admit (never fewer: a dropped field only widens).
 *  - DENY rules are kept only when every condition survives: a DENY with a dropped
 *    field would deny more than the policy says, so such rules stay gateway-only.
 *  - AUDIT and CUSTOM policies, and policies whose selector does not pick the
 *    gateway, are not rendered (the gateway marks AUDIT matches and fails CUSTOM closed).
 *
 * Principals are written as Istio compares them, `td/ns/<ns>/sa/<sa>` — an Istio
 * policy naming `spiffe://…` never matches. Around them: PeerAuthentication STRICT
 * for the namespace, an allow-nothing policy so a workload no policy names is
 * closed, the gateway → runner call (where Istio does see HTTP), and Prometheus's
 * scrape of the admin port.
 */
export function renderIstio(ctx: RenderContext): KubeObject[] {
  if (ctx.values.mesh !== "istio") return [];
  const ns = ctx.namespace;
  const out: KubeObject[] = [];
  const gatewayOnly: string[] = [];
  const names = policyNames(ctx.documents);

  // v1beta1: served by every Istio release (v1 only from 1.22), so older edge clusters accept it too.
  out.push(object("security.istio.io/v1beta1", "PeerAuthentication", "default", ns, "mesh", { spec: { mtls: { mode: "STRICT" } } }));

  for (const doc of ctx.documents) {
    const id = doc.compiled.id;
    if (!selectsGateway(ctx, doc)) {
      gatewayOnly.push(`${id} (its selector does not pick the gateway)`);
      continue;
    }
    const action = doc.compiled.action;
    if (action === "AUDIT" || action === "CUSTOM") {
      gatewayOnly.push(`${id} (${action} is decided by the gateway)`);
      continue;
    }
    const derived = deriveRules(doc, action, ctx.gateway.port);
    if (derived.rules.length === 0) {
      gatewayOnly.push(`${id} (${derived.notes.length > 0 ? derived.notes.join("; ") : "no rules"})`);
      continue;
    }
    const annotations: Record<string, string> = { [ANNOTATIONS.policy]: id };
    if (derived.notes.length > 0) annotations[ANNOTATIONS.note] = `Enforced by the edgeward gateway only: ${derived.notes.join("; ")}.`;
    out.push(
      object(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        names.get(id)!,
        ns,
        "mesh",
        { spec: { selector: { matchLabels: ctx.gateway.selector }, action, rules: derived.rules } },
        { annotations },
      ),
    );
  }

  // Istio allows a workload no ALLOW policy selects; Edgeward denies. This keeps the mesh as strict.
  const closedAnnotations: Record<string, string> = {};
  if (gatewayOnly.length > 0) closedAnnotations[ANNOTATIONS.gatewayOnly] = gatewayOnly.join("; ");
  out.push(object("security.istio.io/v1", "AuthorizationPolicy", "allow-nothing", ns, "mesh", { spec: {} }, { annotations: closedAnnotations }));

  out.push(
    object("security.istio.io/v1", "AuthorizationPolicy", "gateway-to-runner", ns, "mesh", {
      spec: {
        selector: { matchLabels: ctx.runner.selector },
        action: "ALLOW",
        rules: [
          {
            from: [{ source: { principals: [ctx.gateway.principal] } }],
            to: [{ operation: { ports: [String(ctx.runner.port)], methods: ["POST"], paths: ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] } }],
          },
        ],
      },
    }),
  );

  if (ctx.values.monitoring.enabled) {
    const m = ctx.values.monitoring;
    out.push(
      object("security.istio.io/v1", "AuthorizationPolicy", "prometheus-scrape", ns, "mesh", {
        spec: {
          selector: { matchLabels: ctx.gateway.selector },
          action: "ALLOW",
          rules: [
            {
              from: [{ source: { principals: [principal(ctx.trustDomain, m.prometheusNamespace, m.prometheusServiceAccount)] } }],
              to: [{ operation: { ports: [String(ctx.gateway.adminPort)], methods: ["GET"], paths: ["/metrics"] } }],
            },
          ],
        },
      }),
    );
  }
  return out;
}

/** Object names for the policies: the policy's name, or "<namespace>-<name>" where two namespaces share one. */
export function policyNames(documents: readonly PolicyDocument[]): Map<string, string> {
  const count = new Map<string, number>();
  for (const d of documents) count.set(d.name, (count.get(d.name) ?? 0) + 1);
  return new Map(documents.map((d) => [d.compiled.id, (count.get(d.name) ?? 0) > 1 ? `${d.namespace}-${d.name}` : d.name]));
}

// Source fields Istio checks on a TLS connection; requestPrincipals need a JWT, which a TLS passthrough never shows.
const L4_SOURCE = ["principals", "notPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"];
const L4_OPERATION = ["ports", "notPorts"];
const L4_CONDITIONS = new Set(["source.ip", "remote.ip", "source.namespace", "source.principal", "destination.port", "connection.sni"]);
const PRINCIPAL_FIELDS = new Set(["principals", "notPrincipals"]);

type IstioRule = Record<string, unknown>;

function istioPrincipal(p: string): string {
  return p.startsWith("spiffe://") ? p.slice("spiffe://".length) : p;
}

/**
 * Translates one policy's rules. Returns the Istio rules and, for the annotation, what
 * was left to the gateway. A rule that can never match at the gateway (a source
 * requiring a JWT principal, a condition on request.auth values) is dropped in both
 * ALLOW and DENY: it allows or denies nothing either way.
 */
function deriveRules(doc: PolicyDocument, action: "ALLOW" | "DENY", gatewayPort: number): { rules: IstioRule[]; notes: string[] } {
  const notes = new Set<string>();
  const rules: IstioRule[] = [];
  (doc.spec.rules ?? []).forEach((raw, i) => {
    const rule: PolicyRule = raw ?? {};
    let exact = true;
    const note = (what: string) => {
      notes.add(what);
      exact = false;
    };
    if (rule.limits !== undefined) notes.add("limits");
    if (rule.essential !== undefined) notes.add("essential");

    let from: { source: Record<string, string[]> }[] | undefined;
    if (rule.from !== undefined) {
      from = [];
      for (const { source } of rule.from) {
        if (source["requestPrincipals"] !== undefined) continue; // never matches: no JWTs at the gateway
        const kept: Record<string, string[]> = {};
        for (const [field, values] of Object.entries(source)) {
          if (L4_SOURCE.includes(field)) kept[field] = PRINCIPAL_FIELDS.has(field) ? values.map(istioPrincipal) : values;
          // notRequestPrincipals always matches at the gateway: dropping it changes nothing.
          else if (field !== "notRequestPrincipals") note(`from.source.${field}`);
        }
        if (Object.keys(kept).length === 0) {
          from = undefined; // an empty source matches any caller
          break;
        }
        from.push({ source: kept });
      }
      if (from !== undefined && from.length === 0) return; // every source needs a JWT: the rule matches nothing
    }

    let to: { operation: Record<string, string[]> }[] | undefined;
    if (rule.to !== undefined) {
      const ops = new Map<string, { operation: Record<string, string[]> }>();
      for (const { operation } of rule.to) {
        const kept: Record<string, string[]> = {};
        for (const [field, values] of Object.entries(operation)) {
          if (L4_OPERATION.includes(field)) kept[field] = values.map(String);
          else note(`to.operation.${field}`);
        }
        if (Object.keys(kept).length === 0) kept["ports"] = [String(gatewayPort)];
        ops.set(JSON.stringify(kept), { operation: kept });
      }
      to = [...ops.values()];
    }

    const when: Record<string, unknown>[] = [];
    for (const c of rule.when ?? []) {
      if (c.cel !== undefined) {
        note("when.cel");
        continue;
      }
      const key = c.key!;
      if (key.startsWith("request.auth.")) {
        if (c.values !== undefined) return; // never present at the gateway: the condition never holds
        continue; // notValues only: always holds
      }
      if (!L4_CONDITIONS.has(key)) {
        note(`when ${key}`);
        continue;
      }
      const fix = (vs: string[] | undefined) => (vs === undefined ? undefined : key === "source.principal" ? vs.map(istioPrincipal) : vs.map(String));
      const cond: Record<string, unknown> = { key };
      const values = fix(c.values);
      const notValues = fix(c.notValues);
      if (values !== undefined) cond["values"] = values;
      if (notValues !== undefined) cond["notValues"] = notValues;
      when.push(cond);
    }

    if (action === "DENY" && !exact) {
      notes.add(`DENY rule ${i} needs the HTTP request, which the mesh cannot see inside the gateway's TLS`);
      return;
    }
    const out: IstioRule = {};
    if (from !== undefined) out["from"] = from;
    // Every rule on the gateway is bound to the gateway's port unless it names ports itself.
    out["to"] = to ?? [{ operation: { ports: [String(gatewayPort)] } }];
    if (when.length > 0) out["when"] = when;
    rules.push(out);
  });
  // Sort for a stable annotation; the rules keep the file's order.
  return { rules, notes: [...notes].sort(describeOrder).map(describe) };
}

function describeOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function describe(note: string): string {
  const edgewardOnly = ["to.operation.models", "to.operation.notModels", "when.cel", "limits", "essential"];
  return edgewardOnly.includes(note) ? `${note} (Edgeward only)` : note;
}
