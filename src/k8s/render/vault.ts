import type { RenderContext } from "./context.ts";

const TOKEN_VOLUME = "vault-token";
/** The file the agent renders the secret to, under /vault/secrets/ in the gateway container. */
export const VAULT_SECRET_FILE = "edgeward";

/**
 * Vault Agent Injector annotations for the gateway's pod: the agent authenticates
 * with Kubernetes auth as `role`, renders `secretPath` to /vault/secrets/edgeward
 * (mode 0400, owned by the gateway's UID) before the gateway starts, and keeps it
 * fresh. The agent runs with the gateway's UID and the injector's restricted
 * security context.
 */
export function vaultPodAnnotations(ctx: RenderContext): Record<string, string> {
  const v = ctx.values.vault;
  if (!v.enabled) return {};
  const uid = String(ctx.values.gateway.runAsUser);
  return {
    "vault.hashicorp.com/agent-inject": "true",
    "vault.hashicorp.com/service": v.address!,
    "vault.hashicorp.com/role": v.role!,
    [`vault.hashicorp.com/agent-inject-secret-${VAULT_SECRET_FILE}`]: v.secretPath!,
    [`vault.hashicorp.com/agent-inject-perms-${VAULT_SECRET_FILE}`]: "0400",
    "vault.hashicorp.com/agent-pre-populate": "true",
    "vault.hashicorp.com/agent-run-as-user": uid,
    "vault.hashicorp.com/agent-run-as-group": uid,
    "vault.hashicorp.com/agent-set-security-context": "true",
    // The pod mounts no service-account token; the agent logs in with this projected,
    // short-lived token whose audience is Vault alone.
    "vault.hashicorp.com/agent-service-account-token-volume-name": TOKEN_VOLUME,
    // The agent's init container runs before the mesh proxy exists, while the mesh's CNI
    // already redirects the pod's traffic to it: Vault (TLS of its own) bypasses the proxy.
    ...(ctx.values.mesh === "istio" ? { "traffic.sidecar.istio.io/excludeOutboundPorts": String(v.port) } : {}),
    ...(ctx.values.mesh === "linkerd" ? { "config.linkerd.io/skip-outbound-ports": String(v.port) } : {}),
  };
}

export function vaultVolumes(ctx: RenderContext): Record<string, unknown>[] {
  if (!ctx.values.vault.enabled) return [];
  return [
    {
      name: TOKEN_VOLUME,
      projected: {
        defaultMode: 0o400,
        sources: [{ serviceAccountToken: { audience: "vault", expirationSeconds: 600, path: "token" } }],
      },
    },
  ];
}
