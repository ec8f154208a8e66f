import type { ConfigInput } from "../../config/schema.ts";
import { evaluate } from "../../policy/index.ts";
import type { PolicySet } from "../../policy/index.ts";
import type { KubeObject } from "../objects.ts";
import { ANNOTATIONS, GATEWAY_NAME, gatewayWorkload, object, principal } from "./context.ts";
import type { RenderContext } from "./context.ts";
import type { Allow, Peer } from "./network-policy.ts";
import { GATEWAY_DEFAULT_MAX_BODY_BYTES } from "./values.ts";

/**
 * Istio ext_authz (values `authz`, mesh istio only). The gateway pod also serves Envoy's
 * external authorization API (its configuration's `authz` section) on a port of its own,
 * behind a Service of its own; the mesh learns it as the extension provider
 * "edgeward-authz"; and with protectRunner a CUSTOM AuthorizationPolicy makes the runner's
 * sidecar ask it about every OpenAI request before the runner sees it.
 *
 * meshConfig is not a namespaced object, so the provider is rendered as an IstioOperator
 * overlay (spec.meshConfig.extensionProviders) to merge into the mesh's own installation —
 * it is marked local-config and is not for `kubectl apply`.
 *
 * Who may call the authorizer is closed like everything else: NetworkPolicy lets only the
 * runner's pods (their sidecars make the call) and the listed clients reach the port, and
 * an Istio ALLOW policy names only their identities — whoever can call Check can claim any
 * caller, so nothing else may.
 */

/** The extension provider's name in meshConfig, which CUSTOM policies name. */
export const AUTHZ_PROVIDER = "edgeward-authz";
export const AUTHZ_SERVICE = `${GATEWAY_NAME}-authz`;
/** Istio selects the protocol by the port name's prefix. */
export const AUTHZ_PORT_NAME = { grpc: "grpc-authz", http: "http-authz" } as const;
/** The gRPC method Envoy calls. */
export const CHECK_METHOD_PATH = "/envoy.service.auth.v3.Authorization/Check";
/** What the runner serves; the CUSTOM policy checks everything under it. */
const OPENAI_PATHS = "/v1/*";
const INFERENCE_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];
/** Envoy's own ext_authz default; Istio's default is 600s. The gRPC service answers a deny before this deadline. */
const CHECK_TIMEOUT = "0.2s";
/** Headers the HTTP service reads (the caller's identity is the XFCC header), sends upstream on allow, and back on deny. */
const HTTP_HEADERS_IN_CHECK = ["x-forwarded-client-cert", "x-request-id", "content-type", "x-envoy-auth-partial-body"];
const HEADERS_UPSTREAM_ON_ALLOW = ["x-edgeward-decision", "x-edgeward-principal", "x-edgeward-request-id"];
const HEADERS_DOWNSTREAM_ON_DENY = ["content-type", "retry-after", "x-edgeward-decision", "x-edgeward-request-id"];

/** The authz facts render modules share; null when `authz.enabled` is false. */
export interface AuthzFacts {
  readonly transport: "grpc" | "http";
  readonly port: number;
  readonly portName: string;
  /** "" for gRPC, or when the HTTP service has no prefix. */
  readonly pathPrefix: string;
  readonly maxBodyBytes: number;
  readonly protectRunner: boolean;
  /** The provider's service as Istio resolves it: the Service's fully qualified name. */
  readonly serviceHost: string;
}

export function authzFacts(ctx: RenderContext): AuthzFacts | null {
  const a = ctx.values.authz;
  if (!a.enabled || ctx.values.mesh !== "istio") return null;
  return {
    transport: a.transport,
    port: a.port,
    portName: AUTHZ_PORT_NAME[a.transport],
    pathPrefix: a.transport === "http" ? (a.pathPrefix ?? "") : "",
    maxBodyBytes: a.maxBodyBytes ?? ctx.values.gateway.limits?.maxBodyBytes ?? GATEWAY_DEFAULT_MAX_BODY_BYTES,
    protectRunner: a.protectRunner,
    serviceHost: `${AUTHZ_SERVICE}.${ctx.namespace}.svc.${a.clusterDomain}`,
  };
}

/** The gateway configuration's `authz` section: the listener on all interfaces of the pod; NetworkPolicy and Istio decide who reaches it. */
export function authzConfig(ctx: RenderContext): ConfigInput["authz"] {
  const f = authzFacts(ctx);
  if (f === null) return undefined;
  const listen = `0.0.0.0:${f.port}`;
  return f.transport === "grpc"
    ? { grpc: listen, principalFrom: "source", maxBodyBytes: f.maxBodyBytes }
    : { http: listen, ...(f.pathPrefix === "" ? {} : { pathPrefix: f.pathPrefix }), maxBodyBytes: f.maxBodyBytes };
}

/** The container port on the gateway. */
export function authzContainerPorts(ctx: RenderContext): Record<string, unknown>[] {
  const f = authzFacts(ctx);
  return f === null ? [] : [{ name: f.portName, containerPort: f.port, protocol: "TCP" }];
}

/** The authorizer's own ClusterIP Service, so that the gateway's callers' Service carries the mTLS port only. */
export function authzServices(ctx: RenderContext): KubeObject[] {
  const f = authzFacts(ctx);
  if (f === null) return [];
  return [
    object("v1", "Service", AUTHZ_SERVICE, ctx.namespace, "authz", {
      spec: {
        type: "ClusterIP",
        selector: ctx.gateway.selector,
        ports: [{ name: f.portName, port: f.port, targetPort: f.portName, protocol: "TCP", appProtocol: f.transport }],
      },
    }),
  ];
}

/** Whose sidecars call the authorizer: the runner's (protectRunner) and the listed clients. */
function authzPeers(ctx: RenderContext, f: AuthzFacts): Peer[] {
  const peers: Peer[] = [];
  if (f.protectRunner) peers.push({ namespace: null, podLabels: ctx.runner.selector, serviceAccount: ctx.runner.name });
  for (const c of ctx.values.authz.clients) {
    peers.push({
      namespace: c.namespace,
      ...(c.podLabels === undefined ? {} : { podLabels: c.podLabels }),
      ...(c.serviceAccount === "*" ? {} : { serviceAccount: c.serviceAccount }),
    });
  }
  return peers;
}

/** The L3/4 holes: the runner's pods out to the gateway's authz port, and the gateway's authz port in from the callers' pods. */
export function authzAllows(ctx: RenderContext): Allow[] {
  const f = authzFacts(ctx);
  if (f === null) return [];
  const ports = [{ port: f.port, protocol: "TCP" as const }];
  const allows: Allow[] = [];
  if (f.protectRunner) {
    allows.push({ name: "runner-to-authz", direction: "egress", target: ctx.runner.selector, peers: [{ namespace: null, podLabels: ctx.gateway.selector, serviceAccount: ctx.gateway.name }], ports });
  }
  allows.push({ name: "authz-from-sidecars", direction: "ingress", target: ctx.gateway.selector, peers: authzPeers(ctx, f), ports });
  return allows;
}

function extensionProvider(f: AuthzFacts): Record<string, unknown> {
  // allowPartialMessage: a body over maxRequestBytes still reaches Edgeward, marked partial, and is refused (413) there
  // *and recorded* in the decision log; with false Envoy would answer 413 itself and the refusal would leave no record.
  const body = { maxRequestBytes: f.maxBodyBytes, allowPartialMessage: true, packAsBytes: false };
  if (f.transport === "grpc") {
    return {
      name: AUTHZ_PROVIDER,
      envoyExtAuthzGrpc: { service: f.serviceHost, port: f.port, timeout: CHECK_TIMEOUT, failOpen: false, includeRequestBodyInCheck: body },
    };
  }
  const http: Record<string, unknown> = { service: f.serviceHost, port: f.port };
  if (f.pathPrefix !== "") http["pathPrefix"] = f.pathPrefix;
  Object.assign(http, {
    timeout: CHECK_TIMEOUT,
    failOpen: false,
    includeRequestHeadersInCheck: HTTP_HEADERS_IN_CHECK,
    headersToUpstreamOnAllow: HEADERS_UPSTREAM_ON_ALLOW,
    headersToDownstreamOnDeny: HEADERS_DOWNSTREAM_ON_DENY,
    // packAsBytes only applies to gRPC.
    includeRequestBodyInCheck: { maxRequestBytes: f.maxBodyBytes, allowPartialMessage: true },
  });
  return { name: AUTHZ_PROVIDER, envoyExtAuthzHttp: http };
}

/** Marks an object that is input to another tool, not a cluster object (kpt/kustomize honour it; kubectl does not). */
export const LOCAL_CONFIG = "config.kubernetes.io/local-config";

/**
 * The mesh objects: the meshConfig overlay, the CUSTOM policy on the runner, and the
 * ALLOW policy on the gateway's authz port for the sidecars that call it.
 */
export function renderAuthz(ctx: RenderContext): KubeObject[] {
  const f = authzFacts(ctx);
  if (f === null) return [];
  const ns = ctx.namespace;
  const meshNamespace = ctx.values.meshNamespace ?? "istio-system";
  const out: KubeObject[] = [
    object(
      "install.istio.io/v1alpha1",
      "IstioOperator",
      AUTHZ_PROVIDER,
      meshNamespace,
      "mesh",
      { spec: { meshConfig: { extensionProviders: [extensionProvider(f)] } } },
      {
        annotations: {
          [LOCAL_CONFIG]: "true",
          [ANNOTATIONS.note]:
            `Not for kubectl apply: merge spec.meshConfig.extensionProviders into the mesh's own IstioOperator (istioctl install -f yours.yaml -f this.yaml, ` +
            `or copy the entry into an existing extensionProviders list, which a second overlay would replace) or into the mesh key of the istio ConfigMap in ${meshNamespace}. ` +
            `The CUSTOM AuthorizationPolicy naming ${AUTHZ_PROVIDER} denies every request until istiod knows the provider.`,
        },
      },
    ),
  ];

  if (f.protectRunner) {
    out.push(
      object(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        "runner-ext-authz",
        ns,
        "mesh",
        {
          spec: {
            selector: { matchLabels: ctx.runner.selector },
            action: "CUSTOM",
            provider: { name: AUTHZ_PROVIDER },
            rules: [{ to: [{ operation: { ports: [String(ctx.runner.port)], paths: [OPENAI_PATHS] } }] }],
          },
        },
        {
          annotations: {
            [ANNOTATIONS.note]:
              `The runner's sidecar asks Edgeward (${AUTHZ_PROVIDER}) about every request under /v1/ before the runner sees it. ` +
              `The caller it names is the gateway (${ctx.gateway.principal}), so the policy file ALLOWs that identity for the inference paths.`,
          },
        },
      ),
    );
  }

  const a = ctx.values.authz;
  const principals = [
    ...(f.protectRunner ? [ctx.runner.principal] : []),
    ...a.clients.map((c) => principal(ctx.trustDomain, c.namespace, c.serviceAccount)),
  ];
  // Istio sees the call in plain HTTP/2 inside its mTLS: the method and path narrow it to the check itself.
  const operation: Record<string, string[]> = { ports: [String(f.port)] };
  if (f.transport === "grpc") {
    operation["methods"] = ["POST"];
    operation["paths"] = [CHECK_METHOD_PATH];
  } else if (f.pathPrefix !== "") {
    operation["paths"] = [`${f.pathPrefix}/*`];
  }
  out.push(
    object("security.istio.io/v1", "AuthorizationPolicy", "authz-callers", ns, "mesh", {
      spec: {
        selector: { matchLabels: ctx.gateway.selector },
        action: "ALLOW",
        rules: [{ from: [{ source: { principals: [...new Set(principals)] } }], to: [{ operation }] }],
      },
    }),
  );
  return out;
}

/** render cannot be done: the policy file would refuse what the rendered deployment sends it. */
export class AuthzError extends Error {
  readonly key = "authz.protectRunner";
  constructor(detail: string) {
    super(`authz.protectRunner: ${detail}`);
    this.name = "AuthzError";
  }
}

/**
 * With protectRunner, every request the gateway forwards is checked again at the runner,
 * and the caller Envoy names there is the gateway's own identity. A policy file that
 * admits no such request would make the runner refuse everything; say so now, not in
 * the pod. The requests tried are the ones the gateway forwards: POST to an inference
 * path, for a model the runner serves, with max_tokens set (the gateway sets it).
 */
export function checkGatewayAdmitted(ctx: RenderContext, set: PolicySet): void {
  const f = authzFacts(ctx);
  if (f === null || !f.protectRunner) return;
  const gateway = `spiffe://${ctx.gateway.principal}`;
  const workload = gatewayWorkload(ctx);
  let first: string | null = null;
  for (const path of INFERENCE_PATHS) {
    for (const model of ctx.values.runner.models) {
      const decision = evaluate(
        set,
        {
          source: { principal: gateway },
          request: {
            method: "POST",
            path,
            host: `${ctx.runner.name}.${ctx.namespace}.svc:${ctx.runner.port}`,
            // Envoy's gRPC check carries the destination port; the HTTP protocol carries none.
            ...(f.transport === "grpc" ? { port: ctx.runner.port } : {}),
            headers: {},
            model,
            maxTokens: 1,
            stream: false,
            promptTokens: 1,
          },
        },
        { workload },
      );
      if (decision.decision === "ALLOW") return;
      first ??= `POST ${path} for model ${model}: ${decision.reason}`;
    }
  }
  throw new AuthzError(
    `the runner's sidecar asks Edgeward about each request the gateway forwards, and the caller it names is the gateway (${gateway}); ` +
      `the policy file ${ctx.policy.file} admits no such request (${first}), so the runner would refuse every one. ` +
      `Add an ALLOW rule for principal ${ctx.gateway.principal} on the inference paths${f.transport === "grpc" ? ` and port ${ctx.runner.port}` : ""} (docs/istio.md shows one), or set authz.protectRunner: false`,
  );
}

/** With authz, a policy naming the gateway's own identity is for the runner's checks: the gateway is not its own caller. */
export function isGatewayItself(ctx: RenderContext, c: { namespace: string; serviceAccount: string }): boolean {
  return authzFacts(ctx) !== null && c.namespace === ctx.namespace && c.serviceAccount === ctx.gateway.name;
}
