import type { Aliases, Check, CheckFinding, Severity } from "../check.ts";
import { asArray, asObject, asString, jsonPath } from "../fields.ts";
import type { Json } from "../fields.ts";
import { containersOf } from "../object-index.ts";
import type { ContainerRef, ObjectIndex, PodTemplate } from "../object-index.ts";

/**
 * The Pod Security Standard "restricted" profile, check for check as
 * pod-security-admission evaluates it at version "latest"
 * (k8s.io/pod-security-admission/policy/check_*.go): the baseline checks, with
 * the restricted checks overriding their baseline counterparts
 * (capabilities, volumes, seccomp, procMount). Where one upstream check covers a
 * baseline and a restricted rule, it is split in two non-overlapping checks so each
 * carries its own severity: a manifest has no findings here exactly when the
 * admission controller would admit it at `enforce: restricted`.
 */

const PSS_URL = "https://kubernetes.io/docs/concepts/security/pod-security-standards/";
const upstream = (file: string) => ({
  title: `pod-security-admission ${file}`,
  url: `https://github.com/kubernetes/pod-security-admission/blob/master/policy/${file}`,
});

interface PssMeta {
  id: string;
  severity: Severity;
  title: string;
  remediation: string;
  anchor: string;
  file: string;
  aliases: Aliases;
}

function pssCheck(meta: PssMeta, perPod: (pod: PodTemplate) => CheckFinding[]): Check {
  return {
    id: meta.id,
    severity: meta.severity,
    category: "Pod security",
    title: meta.title,
    remediation: meta.remediation,
    references: [{ title: "Pod Security Standards: Restricted", url: `${PSS_URL}#${meta.anchor}` }, upstream(meta.file)],
    aliases: meta.aliases,
    profiles: ["pss-restricted"],
    run: (index: ObjectIndex) => index.pods.flatMap(perPod),
  };
}

function podSecurityContext(pod: PodTemplate): Json | undefined {
  return asObject(pod.spec["securityContext"]);
}

function containerSecurityContext(c: ContainerRef): Json | undefined {
  return asObject(c.container["securityContext"]);
}

const podSc = (pod: PodTemplate, ...rest: (string | number)[]) => jsonPath(pod.specPath, "securityContext", ...rest);
const containerSc = (c: ContainerRef, ...rest: (string | number)[]) => jsonPath(c.path, "securityContext", ...rest);

// Windows pods are exempt from the Linux-only restricted checks (1.25+).
function isWindows(pod: PodTemplate): boolean {
  return asString(asObject(pod.spec["os"])?.["name"]) === "windows";
}

// Pods in a user namespace may run as UID 0 inside it (1.35+).
function inUserNamespace(pod: PodTemplate): boolean {
  return pod.spec["hostUsers"] === false;
}

const describe = (pod: PodTemplate) => `${pod.owner.kind} ${pod.namespace}/${pod.owner.metadata.name}`;
const named = (c: ContainerRef) => `container "${c.name}"`;

const hostProcess = pssCheck(
  {
    id: "pss.host-process",
    severity: "critical",
    title: "Windows HostProcess containers are forbidden",
    remediation: "Remove securityContext.windowsOptions.hostProcess or set it to false.",
    anchor: "baseline",
    file: "check_windowsHostProcess.go",
    aliases: { trivy: "KSV103" },
  },
  (pod) => {
    const out: CheckFinding[] = [];
    if (asObject(podSecurityContext(pod)?.["windowsOptions"])?.["hostProcess"] === true) {
      out.push({ object: pod.owner, path: podSc(pod, "windowsOptions", "hostProcess"), message: `${describe(pod)} sets hostProcess=true` });
    }
    for (const c of containersOf(pod)) {
      if (asObject(containerSecurityContext(c)?.["windowsOptions"])?.["hostProcess"] === true) {
        out.push({ object: pod.owner, path: containerSc(c, "windowsOptions", "hostProcess"), message: `${named(c)} sets hostProcess=true` });
      }
    }
    return out;
  },
);

const hostNamespaces = pssCheck(
  {
    id: "pss.host-namespaces",
    severity: "critical",
    title: "Sharing the host's network, PID or IPC namespace is forbidden",
    remediation: "Remove hostNetwork, hostPID and hostIPC from the pod spec (or set them to false).",
    anchor: "baseline",
    file: "check_hostNamespaces.go",
    aliases: { polaris: "hostNetworkSet", kubescape: "C-0041", trivy: "KSV009" },
  },
  (pod) =>
    (["hostNetwork", "hostPID", "hostIPC"] as const)
      .filter((f) => pod.spec[f] === true)
      .map((f) => ({ object: pod.owner, path: jsonPath(pod.specPath, f), message: `${describe(pod)} sets ${f}=true` })),
);

const privileged = pssCheck(
  {
    id: "pss.privileged",
    severity: "critical",
    title: "Privileged containers are forbidden",
    remediation: "Remove securityContext.privileged or set it to false.",
    anchor: "baseline",
    file: "check_privileged.go",
    aliases: { kubeScore: "container-security-context-privileged", polaris: "runAsPrivileged", kubescape: "C-0057", trivy: "KSV017" },
  },
  (pod) =>
    containersOf(pod)
      .filter((c) => containerSecurityContext(c)?.["privileged"] === true)
      .map((c) => ({ object: pod.owner, path: containerSc(c, "privileged"), message: `${named(c)} sets privileged=true` })),
);

// check_capabilities_baseline.go: the container runtime's default set.
const BASELINE_CAPABILITIES = new Set([
  "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
  "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
]);

function addedCapabilities(c: ContainerRef): { cap: string; path: string }[] {
  const add = asObject(containerSecurityContext(c)?.["capabilities"])?.["add"];
  return asArray(add).map((cap, j) => ({ cap: String(cap), path: containerSc(c, "capabilities", "add", j) }));
}

const capabilitiesBaseline = pssCheck(
  {
    id: "pss.capabilities-baseline",
    severity: "high",
    title: "Adding capabilities beyond the runtime's default set is forbidden",
    remediation: "Remove the capability from securityContext.capabilities.add; only NET_BIND_SERVICE may be added.",
    anchor: "baseline",
    file: "check_capabilities_baseline.go",
    aliases: { polaris: "dangerousCapabilities", kubescape: "C-0046", trivy: "KSV022" },
  },
  (pod) =>
    isWindows(pod)
      ? []
      : containersOf(pod).flatMap((c) =>
          addedCapabilities(c)
            .filter(({ cap }) => !BASELINE_CAPABILITIES.has(cap))
            .map(({ cap, path }) => ({ object: pod.owner, path, message: `${named(c)} adds capability ${cap}` })),
        ),
);

const capabilitiesRestricted = pssCheck(
  {
    id: "pss.capabilities-restricted",
    severity: "medium",
    title: "Containers must drop ALL capabilities and may add only NET_BIND_SERVICE",
    remediation: 'Set securityContext.capabilities.drop: ["ALL"] and add back only NET_BIND_SERVICE if the container binds a port below 1024.',
    anchor: "restricted",
    file: "check_capabilities_restricted.go",
    aliases: { polaris: "insecureCapabilities", trivy: "KSV003" },
  },
  (pod) => {
    if (isWindows(pod)) return [];
    const out: CheckFinding[] = [];
    for (const c of containersOf(pod)) {
      const drop = asArray(asObject(containerSecurityContext(c)?.["capabilities"])?.["drop"]);
      if (!drop.includes("ALL")) {
        out.push({ object: pod.owner, path: containerSc(c, "capabilities", "drop"), message: `${named(c)} must set securityContext.capabilities.drop=["ALL"]` });
      }
      for (const { cap, path } of addedCapabilities(c)) {
        // Capabilities outside the default set are pss.capabilities-baseline's.
        if (cap !== "NET_BIND_SERVICE" && BASELINE_CAPABILITIES.has(cap)) {
          out.push({ object: pod.owner, path, message: `${named(c)} adds capability ${cap}; only NET_BIND_SERVICE may be added` });
        }
      }
    }
    return out;
  },
);

const hostPathVolumes = pssCheck(
  {
    id: "pss.host-path-volumes",
    severity: "high",
    title: "hostPath volumes are forbidden",
    remediation: "Replace the hostPath volume with a persistentVolumeClaim, configMap, secret, emptyDir or another allowed type.",
    anchor: "baseline",
    file: "check_hostPathVolumes.go",
    aliases: { polaris: "hostPathSet", kubescape: "C-0048", trivy: "KSV023" },
  },
  (pod) =>
    asArray(pod.spec["volumes"]).flatMap((v, i) => {
      const volume = asObject(v);
      if (asObject(volume?.["hostPath"]) === undefined) return [];
      const path = asString(asObject(volume?.["hostPath"])?.["path"]) ?? "";
      return [{ object: pod.owner, path: jsonPath(pod.specPath, "volumes", i, "hostPath"), message: `volume "${asString(volume?.["name"]) ?? i}" mounts host path ${JSON.stringify(path)}` }];
    }),
);

// check_restrictedVolumes.go: the volume sources it names as forbidden (hostPath is pss.host-path-volumes').
const RESTRICTED_VOLUME_TYPES = [
  "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi", "glusterfs", "rbd", "flexVolume",
  "cinder", "cephfs", "flocker", "fc", "azureFile", "vsphereVolume", "quobyte", "azureDisk", "portworxVolume",
  "photonPersistentDisk", "scaleIO", "storageos",
];
const ALLOWED_VOLUME_TYPES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret"];

const restrictedVolumes = pssCheck(
  {
    id: "pss.restricted-volumes",
    severity: "medium",
    title: "Only configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected and secret volumes are allowed",
    remediation: "Reach the storage through a persistentVolumeClaim (or csi) instead of an in-line volume source.",
    anchor: "restricted",
    file: "check_restrictedVolumes.go",
    aliases: { trivy: "KSV028" },
  },
  (pod) =>
    asArray(pod.spec["volumes"]).flatMap((v, i) => {
      const volume = asObject(v) ?? {};
      // A volume with no source set is defaulted to emptyDir by the API server before admission.
      if (ALLOWED_VOLUME_TYPES.some((t) => asObject(volume[t]) !== undefined)) return [];
      const type = RESTRICTED_VOLUME_TYPES.find((t) => asObject(volume[t]) !== undefined);
      if (type === undefined) return [];
      return [{ object: pod.owner, path: jsonPath(pod.specPath, "volumes", i, type), message: `volume "${asString(volume["name"]) ?? i}" uses restricted volume type ${type}` }];
    }),
);

const hostPorts = pssCheck(
  {
    id: "pss.host-ports",
    severity: "high",
    title: "Host ports are forbidden",
    remediation: "Remove hostPort from the container port; expose the pod through a Service instead.",
    anchor: "baseline",
    file: "check_hostPorts.go",
    aliases: { polaris: "hostPortSet", kubescape: "C-0044", trivy: "KSV024" },
  },
  (pod) =>
    containersOf(pod).flatMap((c) =>
      asArray(c.container["ports"]).flatMap((p, k) => {
        const hostPort = asObject(p)?.["hostPort"];
        if (hostPort === undefined || hostPort === null || hostPort === 0 || hostPort === "0") return [];
        return [{ object: pod.owner, path: jsonPath(c.path, "ports", k, "hostPort"), message: `${named(c)} uses hostPort ${String(hostPort)}` }];
      }),
    ),
);

const APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/";

const appArmor = pssCheck(
  {
    id: "pss.app-armor",
    severity: "high",
    title: "AppArmor may not be disabled or set to a profile other than RuntimeDefault or Localhost",
    remediation: "Set appArmorProfile.type to RuntimeDefault (or Localhost with a profile), or leave it unset.",
    anchor: "baseline",
    file: "check_appArmorProfile.go",
    aliases: { kubescape: "C-0055", trivy: "KSV002" },
  },
  (pod) => {
    const out: CheckFinding[] = [];
    const allowedType = (t: unknown) => t === "RuntimeDefault" || t === "Localhost";
    const podProfile = asObject(podSecurityContext(pod)?.["appArmorProfile"]);
    if (podProfile !== undefined && !allowedType(podProfile["type"])) {
      out.push({ object: pod.owner, path: podSc(pod, "appArmorProfile", "type"), message: `${describe(pod)} sets AppArmor profile type ${JSON.stringify(podProfile["type"] ?? "")}` });
    }
    for (const c of containersOf(pod)) {
      const profile = asObject(containerSecurityContext(c)?.["appArmorProfile"]);
      if (profile !== undefined && !allowedType(profile["type"])) {
        out.push({ object: pod.owner, path: containerSc(c, "appArmorProfile", "type"), message: `${named(c)} sets AppArmor profile type ${JSON.stringify(profile["type"] ?? "")}` });
      }
    }
    for (const [k, v] of Object.entries(pod.annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (!k.startsWith(APPARMOR_ANNOTATION_PREFIX)) continue;
      if (v === "" || v === "runtime/default" || v.startsWith("localhost/")) continue;
      out.push({ object: pod.owner, path: jsonPath(pod.metaPath, "annotations", k), message: `annotation ${k}=${JSON.stringify(v)} sets a forbidden AppArmor profile` });
    }
    return out;
  },
);

// check_seLinuxOptions.go, 1.31+.
const SELINUX_TYPES = new Set(["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"]);

const seLinux = pssCheck(
  {
    id: "pss.selinux",
    severity: "high",
    title: "Custom SELinux users and roles are forbidden, and types are limited to the container types",
    remediation: "Remove seLinuxOptions.user and seLinuxOptions.role; use a container_* type or none.",
    anchor: "baseline",
    file: "check_seLinuxOptions.go",
    aliases: { trivy: "KSV025" },
  },
  (pod) => {
    const out: CheckFinding[] = [];
    const inspect = (opts: Json | undefined, path: (...r: string[]) => string, who: string) => {
      if (opts === undefined) return;
      const type = opts["type"] ?? "";
      if (typeof type !== "string" || !SELINUX_TYPES.has(type)) out.push({ object: pod.owner, path: path("type"), message: `${who} sets SELinux type ${JSON.stringify(type)}` });
      for (const f of ["user", "role"] as const) {
        const v = opts[f];
        if (v !== undefined && v !== null && v !== "") out.push({ object: pod.owner, path: path(f), message: `${who} sets SELinux ${f} ${JSON.stringify(v)}` });
      }
    };
    inspect(asObject(podSecurityContext(pod)?.["seLinuxOptions"]), (f) => podSc(pod, "seLinuxOptions", f), describe(pod));
    for (const c of containersOf(pod)) inspect(asObject(containerSecurityContext(c)?.["seLinuxOptions"]), (f) => containerSc(c, "seLinuxOptions", f), named(c));
    return out;
  },
);

const procMount = pssCheck(
  {
    id: "pss.proc-mount",
    severity: "high",
    title: "The default /proc masks are required",
    remediation: "Remove securityContext.procMount or set it to Default.",
    anchor: "restricted",
    file: "check_procMount_restricted.go",
    aliases: { trivy: "KSV027" },
  },
  (pod) =>
    containersOf(pod).flatMap((c) => {
      const v = containerSecurityContext(c)?.["procMount"];
      if (v === undefined || v === null || v === "Default") return [];
      return [{ object: pod.owner, path: containerSc(c, "procMount"), message: `${named(c)} sets procMount ${JSON.stringify(v)}` }];
    }),
);

const validSeccomp = (t: unknown) => t === "RuntimeDefault" || t === "Localhost";

const seccompBaseline = pssCheck(
  {
    id: "pss.seccomp-profile-baseline",
    severity: "high",
    title: "Seccomp may not be disabled (Unconfined)",
    remediation: "Set seccompProfile.type to RuntimeDefault or Localhost.",
    anchor: "baseline",
    file: "check_seccompProfile_baseline.go",
    aliases: { trivy: "KSV104" },
  },
  (pod) => {
    if (isWindows(pod)) return [];
    const out: CheckFinding[] = [];
    const podProfile = asObject(podSecurityContext(pod)?.["seccompProfile"]);
    if (podProfile !== undefined && !validSeccomp(podProfile["type"])) {
      out.push({ object: pod.owner, path: podSc(pod, "seccompProfile", "type"), message: `${describe(pod)} sets seccomp profile type ${JSON.stringify(podProfile["type"] ?? "")}` });
    }
    for (const c of containersOf(pod)) {
      const profile = asObject(containerSecurityContext(c)?.["seccompProfile"]);
      if (profile !== undefined && !validSeccomp(profile["type"])) {
        out.push({ object: pod.owner, path: containerSc(c, "seccompProfile", "type"), message: `${named(c)} sets seccomp profile type ${JSON.stringify(profile["type"] ?? "")}` });
      }
    }
    return out;
  },
);

/**
 * Containers that inherit a bad value because neither they nor the pod set the field.
 * When none of them sets it, the pod-level field is the one fix; otherwise each
 * container's own field is.
 */
function implicitFindings(pod: PodTemplate, unset: ContainerRef[], all: ContainerRef[], field: readonly string[], message: (who: string) => string): CheckFinding[] {
  if (unset.length === 0) return [];
  if (unset.length === all.length) return [{ object: pod.owner, path: podSc(pod, ...field), message: message(`pod ${describe(pod)}`) }];
  return unset.map((c) => ({ object: pod.owner, path: containerSc(c, ...field), message: message(named(c)) }));
}

const seccompRestricted = pssCheck(
  {
    id: "pss.seccomp-profile-restricted",
    severity: "medium",
    title: "A seccomp profile (RuntimeDefault or Localhost) must be set",
    remediation: "Set spec.securityContext.seccompProfile.type: RuntimeDefault on the pod.",
    anchor: "restricted",
    file: "check_seccompProfile_restricted.go",
    aliases: { kubeScore: "container-seccomp-profile", trivy: "KSV030" },
  },
  (pod) => {
    // An explicit bad pod-level profile is pss.seccomp-profile-baseline's finding; fixing it fixes these.
    if (isWindows(pod) || asObject(podSecurityContext(pod)?.["seccompProfile"]) !== undefined) return [];
    const all = containersOf(pod);
    const unset = all.filter((c) => asObject(containerSecurityContext(c)?.["seccompProfile"]) === undefined);
    return implicitFindings(pod, unset, all, ["seccompProfile", "type"], (who) => `${who} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`);
  },
);

// check_sysctls.go, the newest allowed set.
const SAFE_SYSCTLS = new Set([
  "kernel.shm_rmid_forced",
  "net.ipv4.ip_local_port_range",
  "net.ipv4.tcp_syncookies",
  "net.ipv4.ping_group_range",
  "net.ipv4.ip_unprivileged_port_start",
  "net.ipv4.ip_local_reserved_ports",
  "net.ipv4.tcp_keepalive_time",
  "net.ipv4.tcp_fin_timeout",
  "net.ipv4.tcp_keepalive_intvl",
  "net.ipv4.tcp_keepalive_probes",
  "net.ipv4.tcp_rmem",
  "net.ipv4.tcp_wmem",
  "net.ipv4.tcp_slow_start_after_idle",
  "net.ipv4.tcp_notsent_lowat",
]);

const sysctls = pssCheck(
  {
    id: "pss.sysctls",
    severity: "high",
    title: "Only the safe, namespaced sysctls may be set",
    remediation: "Remove the sysctl from spec.securityContext.sysctls, or tune it on the node.",
    anchor: "baseline",
    file: "check_sysctls.go",
    aliases: { trivy: "KSV026" },
  },
  (pod) =>
    asArray(podSecurityContext(pod)?.["sysctls"]).flatMap((s, i) => {
      const name = asObject(s)?.["name"];
      if (typeof name === "string" && SAFE_SYSCTLS.has(name)) return [];
      return [{ object: pod.owner, path: podSc(pod, "sysctls", i, "name"), message: `${describe(pod)} sets unsafe sysctl ${JSON.stringify(name ?? "")}` }];
    }),
);

const probeHost = pssCheck(
  {
    id: "pss.probe-host",
    severity: "medium",
    title: "Probes and lifecycle handlers may not name a host",
    remediation: "Remove the host field: probes and hooks then reach the pod's own IP.",
    anchor: "baseline",
    file: "check_hostProbesAndhostLifecycle.go",
    aliases: {},
  },
  (pod) =>
    containersOf(pod).flatMap((c) => {
      const out: CheckFinding[] = [];
      const handlers: [string[], unknown][] = [
        ...(["livenessProbe", "readinessProbe", "startupProbe"] as const).map((p): [string[], unknown] => [[p], c.container[p]]),
        ...(["postStart", "preStop"] as const).map((h): [string[], unknown] => [["lifecycle", h], asObject(c.container["lifecycle"])?.[h]]),
      ];
      for (const [where, handler] of handlers) {
        for (const kind of ["httpGet", "tcpSocket"] as const) {
          const host = asObject(asObject(handler)?.[kind])?.["host"];
          if (host !== undefined && host !== null && host !== "") {
            out.push({ object: pod.owner, path: jsonPath(c.path, ...where, kind, "host"), message: `${named(c)} ${where.join(".")} targets host ${JSON.stringify(host)}` });
          }
        }
      }
      return out;
    }),
);

const allowPrivilegeEscalation = pssCheck(
  {
    id: "pss.allow-privilege-escalation",
    severity: "medium",
    title: "Privilege escalation must be disallowed",
    remediation: "Set securityContext.allowPrivilegeEscalation: false on every container.",
    anchor: "restricted",
    file: "check_allowPrivilegeEscalation.go",
    aliases: { polaris: "privilegeEscalationAllowed", kubescape: "C-0016", trivy: "KSV001" },
  },
  (pod) =>
    isWindows(pod)
      ? []
      : containersOf(pod)
          .filter((c) => containerSecurityContext(c)?.["allowPrivilegeEscalation"] !== false)
          .map((c) => ({ object: pod.owner, path: containerSc(c, "allowPrivilegeEscalation"), message: `${named(c)} must set securityContext.allowPrivilegeEscalation=false` })),
);

const runAsNonRoot = pssCheck(
  {
    id: "pss.run-as-non-root",
    severity: "medium",
    title: "Containers must run as non-root",
    remediation: "Set spec.securityContext.runAsNonRoot: true (and a non-zero runAsUser if the image's user is root).",
    anchor: "restricted",
    file: "check_runAsNonRoot.go",
    aliases: { kubeScore: "container-security-context-user-group-id", polaris: "runAsRootAllowed", kubescape: "C-0013", trivy: "KSV012" },
  },
  (pod) => {
    if (inUserNamespace(pod)) return [];
    const out: CheckFinding[] = [];
    const podValue = podSecurityContext(pod)?.["runAsNonRoot"];
    if (podValue === false) out.push({ object: pod.owner, path: podSc(pod, "runAsNonRoot"), message: `${describe(pod)} must not set securityContext.runAsNonRoot=false` });
    const all = containersOf(pod);
    const unset: ContainerRef[] = [];
    for (const c of all) {
      const v = containerSecurityContext(c)?.["runAsNonRoot"];
      if (v === false) out.push({ object: pod.owner, path: containerSc(c, "runAsNonRoot"), message: `${named(c)} must not set securityContext.runAsNonRoot=false` });
      else if (v !== true) unset.push(c);
    }
    // With runAsNonRoot=false at pod level, that finding is the fix for the containers that inherit it.
    if (podValue !== true && podValue !== false) {
      out.push(...implicitFindings(pod, unset, all, ["runAsNonRoot"], (who) => `${who} must set securityContext.runAsNonRoot=true`));
    }
    return out;
  },
);

const runAsUser = pssCheck(
  {
    id: "pss.run-as-user",
    severity: "high",
    title: "Containers must not run as UID 0",
    remediation: "Set runAsUser to a non-zero UID (or remove it and use an image with a non-root USER).",
    anchor: "restricted",
    file: "check_runAsUser.go",
    aliases: { kubescape: "C-0013", trivy: "KSV105" },
  },
  (pod) => {
    if (inUserNamespace(pod)) return [];
    const out: CheckFinding[] = [];
    if (podSecurityContext(pod)?.["runAsUser"] === 0) out.push({ object: pod.owner, path: podSc(pod, "runAsUser"), message: `${describe(pod)} sets runAsUser=0` });
    for (const c of containersOf(pod)) {
      if (containerSecurityContext(c)?.["runAsUser"] === 0) out.push({ object: pod.owner, path: containerSc(c, "runAsUser"), message: `${named(c)} sets runAsUser=0` });
    }
    return out;
  },
);

export const PSS_RESTRICTED_CHECKS: readonly Check[] = [
  hostProcess,
  hostNamespaces,
  privileged,
  capabilitiesBaseline,
  capabilitiesRestricted,
  hostPathVolumes,
  restrictedVolumes,
  hostPorts,
  appArmor,
  seLinux,
  procMount,
  seccompBaseline,
  seccompRestricted,
  sysctls,
  probeHost,
  allowPrivilegeEscalation,
  runAsNonRoot,
  runAsUser,
];
