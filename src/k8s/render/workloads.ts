import type { KubeObject } from "../objects.ts";
import { authzContainerPorts } from "./authz.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";
import { configChecksum, DECISION_LOG_DIR, GATEWAY_CONFIG_MAP, GATEWAY_CONFIG_PATH } from "./gateway-config.ts";
import { HELPER_CONFIG_MAP, HELPER_HEALTH_PORT, SVID_DIR, WORKLOAD_API_DIR } from "./spire.ts";
import { vaultPodAnnotations, vaultVolumes } from "./vault.ts";

export const MODEL_CLAIM = "edgeward-model";

const RUNTIME_DEFAULT = { type: "RuntimeDefault" };

/** The pod-level half of the restricted Pod Security Standard. */
function podSecurityContext(uid: number): Record<string, unknown> {
  return { runAsNonRoot: true, runAsUser: uid, runAsGroup: uid, fsGroup: uid, seccompProfile: RUNTIME_DEFAULT };
}

/**
 * Every container gets the whole restricted profile on its own, so it stays compliant
 * if copied into another pod: no privilege escalation, no capabilities, non-root with
 * a fixed UID, RuntimeDefault seccomp, and a read-only root filesystem.
 */
export function containerSecurityContext(uid: number): Record<string, unknown> {
  return {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ["ALL"] },
    privileged: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    seccompProfile: RUNTIME_DEFAULT,
  };
}

function httpProbe(path: string, port: number, extra: Record<string, number>): Record<string, unknown> {
  return { httpGet: { path, port, scheme: "HTTP" }, ...extra };
}

function tmpVolume(name = "tmp"): Record<string, unknown> {
  return { name, emptyDir: { sizeLimit: "64Mi" } };
}

function gatewayDeployment(ctx: RenderContext): KubeObject {
  const g = ctx.values.gateway;
  const uid = g.runAsUser;
  const volumes: Record<string, unknown>[] = [
    { name: "config", configMap: { name: GATEWAY_CONFIG_MAP, defaultMode: 0o444 } },
    { name: "svid", emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
    { name: "spire-agent-socket", csi: { driver: ctx.values.spire.csiDriver, readOnly: true } },
    { name: "spiffe-helper", configMap: { name: HELPER_CONFIG_MAP, defaultMode: 0o444 } },
    g.decisionLogClaim === undefined
      ? { name: "decision-log", emptyDir: { sizeLimit: "1Gi" } }
      : { name: "decision-log", persistentVolumeClaim: { claimName: g.decisionLogClaim } },
    tmpVolume(),
    ...vaultVolumes(ctx),
  ];
  // A native sidecar (an init container that keeps running): the gateway starts only
  // once the helper has written the SVID and trust bundle, and the helper renews them.
  const helper = {
    name: "spiffe-helper",
    image: ctx.helperImage,
    imagePullPolicy: "IfNotPresent",
    restartPolicy: "Always",
    args: ["-config", "/etc/spiffe-helper/helper.conf"],
    ports: [{ name: "helper-health", containerPort: HELPER_HEALTH_PORT, protocol: "TCP" }],
    startupProbe: httpProbe("/ready", HELPER_HEALTH_PORT, { periodSeconds: 2, failureThreshold: 60 }),
    livenessProbe: httpProbe("/live", HELPER_HEALTH_PORT, { periodSeconds: 20 }),
    resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { cpu: "100m", memory: "64Mi" } },
    securityContext: containerSecurityContext(uid),
    volumeMounts: [
      { name: "spire-agent-socket", mountPath: WORKLOAD_API_DIR, readOnly: true },
      { name: "svid", mountPath: SVID_DIR },
      { name: "spiffe-helper", mountPath: "/etc/spiffe-helper", readOnly: true },
    ],
  };
  const gatewayContainer = {
    name: ctx.gateway.container,
    image: ctx.gateway.image,
    imagePullPolicy: "IfNotPresent",
    args: ["serve", "--config", GATEWAY_CONFIG_PATH],
    ports: [
      { name: "https", containerPort: g.port, protocol: "TCP" },
      { name: "http-admin", containerPort: g.adminPort, protocol: "TCP" },
      ...authzContainerPorts(ctx),
    ],
    readinessProbe: httpProbe("/readyz", g.adminPort, { periodSeconds: 5, failureThreshold: 3 }),
    livenessProbe: httpProbe("/healthz", g.adminPort, { periodSeconds: 10, failureThreshold: 3 }),
    resources: g.resources,
    securityContext: containerSecurityContext(uid),
    volumeMounts: [
      { name: "config", mountPath: "/etc/edgeward", readOnly: true },
      { name: "svid", mountPath: SVID_DIR, readOnly: true },
      { name: "decision-log", mountPath: DECISION_LOG_DIR },
      { name: "tmp", mountPath: "/tmp" },
    ],
  };
  return object(
    "apps/v1",
    "Deployment",
    ctx.gateway.name,
    ctx.namespace,
    "gateway",
    {
      spec: {
        replicas: g.replicas,
        revisionHistoryLimit: 5,
        selector: { matchLabels: ctx.gateway.selector },
        strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
        template: {
          metadata: {
            labels: ctx.gateway.podLabels,
            annotations: {
              "kubectl.kubernetes.io/default-container": ctx.gateway.container,
              // The config and the policy file live in the ConfigMap: a change to either rolls the pods.
              "edgeward.dev/config-sha256": configChecksum(ctx),
              ...vaultPodAnnotations(ctx),
              // Linkerd passes application TLS through unauthenticated unless the port is opaque.
              ...(ctx.values.mesh === "linkerd" ? { "config.linkerd.io/opaque-ports": String(g.port) } : {}),
            },
          },
          spec: {
            serviceAccountName: ctx.gateway.name,
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: podSecurityContext(uid),
            initContainers: [helper],
            containers: [gatewayContainer],
            volumes,
          },
        },
      },
    },
  );
}

function runnerDeployment(ctx: RenderContext): KubeObject {
  const r = ctx.values.runner;
  const uid = r.runAsUser;
  const gpu = r.gpu.count > 0 ? { [r.gpu.resourceName]: String(r.gpu.count) } : {};
  const resources = {
    requests: { ...r.resources.requests, ...gpu },
    limits: { ...r.resources.limits, ...gpu },
  };
  const volumes: Record<string, unknown>[] = [
    { name: "model", persistentVolumeClaim: { claimName: modelClaimName(ctx), readOnly: true } },
    tmpVolume(),
    { name: "home", emptyDir: { sizeLimit: "1Gi" } },
  ];
  const mounts: Record<string, unknown>[] = [
    { name: "model", mountPath: ctx.values.model.path, readOnly: true },
    { name: "tmp", mountPath: "/tmp" },
    { name: "home", mountPath: "/home/runner" },
  ];
  if (r.shmSize !== undefined) {
    volumes.push({ name: "shm", emptyDir: { medium: "Memory", sizeLimit: r.shmSize } });
    mounts.push({ name: "shm", mountPath: "/dev/shm" });
  }
  // The root filesystem is read-only: point every cache and home directory at the
  // writable emptyDirs, and keep the runner from reaching out (it has no egress anyway).
  const env: Record<string, string> = {
    HOME: "/home/runner",
    XDG_CACHE_HOME: "/home/runner/.cache",
    HF_HUB_OFFLINE: "1",
    DO_NOT_TRACK: "1",
    ...r.env,
  };
  const container: Record<string, unknown> = {
    name: ctx.runner.container,
    image: ctx.runner.image,
    imagePullPolicy: "IfNotPresent",
    ...(r.command === undefined ? {} : { command: r.command }),
    args: r.args,
    env: Object.keys(env).sort().map((name) => ({ name, value: env[name] })),
    ports: [{ name: "http", containerPort: r.port, protocol: "TCP" }],
    startupProbe: httpProbe(r.healthPath, r.port, { periodSeconds: 10, failureThreshold: Math.ceil(r.startupSeconds / 10) }),
    readinessProbe: httpProbe(r.healthPath, r.port, { periodSeconds: 10, failureThreshold: 3 }),
    livenessProbe: httpProbe(r.healthPath, r.port, { periodSeconds: 20, failureThreshold: 3, timeoutSeconds: 5 }),
    resources,
    securityContext: containerSecurityContext(uid),
    volumeMounts: mounts,
  };
  const podSpec: Record<string, unknown> = {
    serviceAccountName: ctx.runner.name,
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: podSecurityContext(uid),
    containers: [container],
    volumes,
  };
  if (r.gpu.runtimeClassName !== undefined) podSpec["runtimeClassName"] = r.gpu.runtimeClassName;
  if (r.nodeSelector !== undefined) podSpec["nodeSelector"] = r.nodeSelector;
  return object("apps/v1", "Deployment", ctx.runner.name, ctx.namespace, "runner", {
    spec: {
      replicas: r.replicas,
      revisionHistoryLimit: 5,
      selector: { matchLabels: ctx.runner.selector },
      // A GPU runner cannot surge: the new pod would wait for the GPU the old one holds.
      strategy: r.gpu.count > 0 ? { type: "Recreate" } : { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: ctx.runner.podLabels, annotations: { "kubectl.kubernetes.io/default-container": ctx.runner.container } },
        spec: podSpec,
      },
    },
  });
}

function modelClaimName(ctx: RenderContext): string {
  const v = ctx.values.model.volume;
  return "persistentVolumeClaim" in v ? v.persistentVolumeClaim.claimName : MODEL_CLAIM;
}

/**
 * A hostPath model directory is exposed through a PersistentVolume bound to one claim:
 * the restricted profile forbids hostPath volumes in pods, and the claim is mounted
 * read-only. An existing claim is used as it is.
 */
function modelStorage(ctx: RenderContext): KubeObject[] {
  const v = ctx.values.model.volume;
  if (!("hostPath" in v)) return [];
  const pvName = `${ctx.namespace}-edgeward-model`;
  const pvSpec: Record<string, unknown> = {
    capacity: { storage: v.hostPath.size },
    accessModes: ["ReadOnlyMany"],
    persistentVolumeReclaimPolicy: "Retain",
    storageClassName: "",
    volumeMode: "Filesystem",
    hostPath: { path: v.hostPath.path, type: "Directory" },
    claimRef: { namespace: ctx.namespace, name: MODEL_CLAIM },
  };
  if (v.hostPath.node !== undefined) {
    pvSpec["nodeAffinity"] = {
      required: { nodeSelectorTerms: [{ matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [v.hostPath.node] }] }] },
    };
  }
  return [
    object("v1", "PersistentVolume", pvName, null, "model", { spec: pvSpec }),
    object("v1", "PersistentVolumeClaim", MODEL_CLAIM, ctx.namespace, "model", {
      spec: {
        accessModes: ["ReadOnlyMany"],
        storageClassName: "",
        volumeMode: "Filesystem",
        volumeName: pvName,
        resources: { requests: { storage: v.hostPath.size } },
      },
    }),
  ];
}

export function renderWorkloads(ctx: RenderContext): KubeObject[] {
  return [gatewayDeployment(ctx), runnerDeployment(ctx), ...modelStorage(ctx)];
}
