import type { Check, CheckFinding, Reference } from "../check.ts";
import { asArray, asObject, asString, jsonPath } from "../fields.ts";
import type { Json } from "../fields.ts";
import { portsAdmit } from "../network-policies.ts";
import type { Peer } from "../network-policies.ts";
import { containersOf } from "../object-index.ts";
import type { ObjectIndex, PodTemplate } from "../object-index.ts";
import { isGatewayPod, portNames, resolvePort, runnersOf } from "../runners.ts";
import type { Runner } from "../runners.ts";
import { describePod } from "./zero-trust.ts";

const DEVICE_PLUGINS: Reference = { title: "Kubernetes: Schedule GPUs", url: "https://kubernetes.io/docs/tasks/manage-gpus/scheduling-gpus/" };

/** Extended resources that are GPUs (or slices of one). */
export function isGpuResource(name: string): boolean {
  return /^(nvidia\.com\/(gpu|mig-.+)|amd\.com\/gpu|gpu\.intel\.com\/.+|habana\.ai\/gaudi)$/.test(name);
}

function resources(c: Json, kind: "requests" | "limits"): Record<string, unknown> {
  return asObject(asObject(c["resources"])?.[kind]) ?? {};
}

const quantity = (v: unknown) => (typeof v === "number" || typeof v === "string" ? String(v) : undefined);

const gpuLimits: Check = {
  id: "llm.gpu-limits",
  severity: "medium",
  category: "LLM serving",
  title: "A GPU request needs an equal GPU limit",
  remediation: "Set resources.limits for the GPU to the same count as resources.requests (or set only the limit; the request defaults to it).",
  references: [DEVICE_PLUGINS],
  aliases: {},
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const c of containersOf(pod)) {
        const requests = resources(c.container, "requests");
        const limits = resources(c.container, "limits");
        for (const [name, requested] of Object.entries(requests)) {
          if (!isGpuResource(name)) continue;
          const limit = quantity(limits[name]);
          if (limit === undefined) {
            out.push({ object: pod.owner, path: jsonPath(c.path, "resources", "limits", name), message: `container "${c.name}" requests ${quantity(requested) ?? "?"} ${name} without a limit; extended resources cannot be overcommitted, so the API server rejects it` });
          } else if (quantity(requested) !== limit) {
            out.push({ object: pod.owner, path: jsonPath(c.path, "resources", "requests", name), message: `container "${c.name}" requests ${quantity(requested) ?? "?"} ${name} but limits it to ${limit}; they must be equal` });
          }
        }
      }
    }
    return out;
  },
};

const visibleDevices: Check = {
  id: "llm.nvidia-visible-devices",
  severity: "high",
  category: "LLM serving",
  title: "NVIDIA_VISIBLE_DEVICES must not hand out GPUs the pod did not request",
  remediation: "Remove NVIDIA_VISIBLE_DEVICES and request the GPU through resources.limits[\"nvidia.com/gpu\"]; the device plugin then sets it to the GPUs allocated.",
  references: [DEVICE_PLUGINS, { title: "NVIDIA Container Toolkit: GPU enumeration (NVIDIA_VISIBLE_DEVICES)", url: "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/docker-specialized.html" }],
  aliases: {},
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const c of containersOf(pod)) {
        const hasGpu = [...Object.keys(resources(c.container, "requests")), ...Object.keys(resources(c.container, "limits"))].some((n) => n.startsWith("nvidia.com/"));
        if (hasGpu) continue;
        asArray(c.container["env"]).forEach((e, i) => {
          const env = asObject(e);
          if (env?.["name"] !== "NVIDIA_VISIBLE_DEVICES") return;
          const value = asString(env["value"]);
          if (env["valueFrom"] === undefined && (value === undefined || value === "" || value === "void" || value === "none")) return;
          out.push({
            object: pod.owner,
            path: jsonPath(c.path, "env", i),
            message: `container "${c.name}" sets NVIDIA_VISIBLE_DEVICES${value !== undefined ? `=${value}` : ""} without requesting nvidia.com/gpu: it reaches GPUs the scheduler gave to others`,
          });
        });
      }
    }
    return out;
  },
};

const MODEL_PATH = /(^|[/_.-])(models?|weights|gguf|checkpoints?)([/_.-]|$)|huggingface|hf[-_]?(hub|cache|home)|\.ollama/i;

// Volume sources that are always mounted read-only, or declared read-only at the source.
function volumeReadOnly(volume: Json | undefined): boolean {
  if (volume === undefined) return false;
  if (["configMap", "secret", "downwardAPI", "projected", "image"].some((k) => asObject(volume[k]) !== undefined)) return true;
  return ["persistentVolumeClaim", "csi", "nfs", "iscsi", "cephfs", "rbd", "azureFile"].some((k) => asObject(volume[k])?.["readOnly"] === true);
}

const modelWritable: Check = {
  id: "llm.model-volume-writable",
  severity: "high",
  category: "LLM serving",
  title: "Model volumes must be mounted read-only",
  remediation: "Set readOnly: true on the volumeMount (download models in an init container or out of band); a writable model lets a compromised runner swap the weights.",
  references: [{ title: "Kubernetes: Read-only mounts", url: "https://kubernetes.io/docs/concepts/storage/volumes/#read-only-mounts" }],
  aliases: {},
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      const volumes = new Map<string, Json>();
      for (const v of asArray(pod.spec["volumes"])) {
        const o = asObject(v);
        const name = asString(o?.["name"]);
        if (o && name) volumes.set(name, o);
      }
      // Init containers are where models are fetched; they may write.
      for (const c of containersOf(pod).filter((x) => x.group === "containers")) {
        asArray(c.container["volumeMounts"]).forEach((m, i) => {
          const mount = asObject(m) ?? {};
          const name = asString(mount["name"]) ?? "";
          const mountPath = asString(mount["mountPath"]) ?? "";
          if (!MODEL_PATH.test(name) && !MODEL_PATH.test(mountPath)) return;
          if (mount["readOnly"] === true || volumeReadOnly(volumes.get(name))) return;
          out.push({ object: pod.owner, path: jsonPath(c.path, "volumeMounts", i, "readOnly"), message: `container "${c.name}" mounts model volume "${name}" at ${mountPath} writable` });
        });
      }
    }
    return out;
  },
};

// ---- Runner reachability ----------------------------------------------------------------------

/** A peer that can only be the gateway: a label selector whose known pods are all gateways. */
function onlyGateway(index: ObjectIndex, peer: Peer): boolean {
  if (peer.wide) return false;
  const matched = index.pods.filter((p) => peer.matches(p));
  if (matched.some((p) => !isGatewayPod(p))) return false;
  return matched.length > 0 || /gateway/i.test(peer.describe);
}

/** Services that publish the runner port outside the cluster. */
function publicServices(index: ObjectIndex, pod: PodTemplate, r: Runner, port: number): CheckFinding[] {
  const out: CheckFinding[] = [];
  for (const s of index.servicesSelecting(pod)) {
    const spec = asObject(s["spec"]) ?? {};
    const external = spec["type"] === "LoadBalancer" || spec["type"] === "NodePort";
    const externalIPs = asArray(spec["externalIPs"]).length > 0;
    if (!external && !externalIPs) continue;
    const exposes = asArray(spec["ports"]).some((p) => {
      const o = asObject(p) ?? {};
      const target = o["targetPort"] ?? o["port"];
      return resolvePort(r.container, target) === port;
    });
    if (!exposes) continue;
    out.push({
      object: s,
      path: external ? "spec.type" : "spec.externalIPs",
      message: `Service ${s.metadata.name} publishes the ${r.profile.title} port ${port} of ${describePod(pod)} outside the cluster (${external ? `type ${String(spec["type"])}` : "externalIPs"}), bypassing the gateway`,
    });
  }
  return out;
}

const runnerExposed: Check = {
  id: "llm.runner-exposed",
  severity: "high",
  category: "LLM serving",
  title: "Model runners must be reachable from the gateway only",
  remediation: "Select the runner pods with a NetworkPolicy whose only ingress rule admits the gateway pods (by label) on the runner port, and keep the runner's Service ClusterIP.",
  references: [{ title: "Kubernetes: Network Policies", url: "https://kubernetes.io/docs/concepts/services-networking/network-policies/" }],
  aliases: {},
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const r of runnersOf(pod)) {
        if (r.port === undefined || r.loopback || pod.spec["hostNetwork"] === true) continue;
        const port = r.port;
        out.push(...publicServices(index, pod, r, port));
        const isolating = index.isolating(pod, "ingress");
        if (isolating.length === 0) {
          out.push({ object: pod.owner, path: "", message: `no NetworkPolicy restricts ingress to ${describePod(pod)}: anything in the cluster reaches the ${r.profile.title} port ${port} without passing the gateway` });
          continue;
        }
        for (const { policy, rules } of isolating) {
          for (const rule of rules.rules) {
            if (rule.action !== "Allow" || !portsAdmit(rule.ports, port, portNames(r.container, port))) continue;
            if (rule.peers !== "any" && rule.peers.length === 0) continue;
            const others = rule.peers === "any" ? ["any source"] : rule.peers.filter((p) => !onlyGateway(index, p)).map((p) => p.describe);
            if (others.length === 0) continue;
            out.push({ object: policy.object, path: rule.path, message: `this rule lets ${others.join(", ")} reach the ${r.profile.title} port ${port} of ${describePod(pod)}, not only the gateway` });
          }
        }
      }
    }
    return out;
  },
};

// ---- Probes ----------------------------------------------------------------------------------

const PROBES = ["livenessProbe", "readinessProbe", "startupProbe"] as const;

const probePath: Check = {
  id: "llm.probe-path",
  severity: "medium",
  category: "LLM serving",
  title: "Health probes must use a path and port the runner serves",
  remediation: "Probe the runner's health endpoint on its port: vLLM /health, llama.cpp server /health, Ollama / (or /api/version), Edgeward runner /health.",
  references: [
    { title: "Kubernetes: Configure liveness, readiness and startup probes", url: "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/" },
    { title: "vLLM: OpenAI-compatible server", url: "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html" },
  ],
  aliases: { kubeScore: "pod-probes" },
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const r of runnersOf(pod)) {
        for (const probe of PROBES) {
          const httpGet = asObject(asObject(r.container.container[probe])?.["httpGet"]);
          if (httpGet === undefined) continue;
          const raw = asString(httpGet["path"]);
          const path = (raw === undefined || raw === "" ? "/" : raw).split("?")[0] as string;
          if (!r.served.includes(path)) {
            out.push({
              object: pod.owner,
              path: jsonPath(r.container.path, probe, "httpGet", "path"),
              message: `${probe} of container "${r.container.name}" requests ${path}, which ${r.profile.title} does not serve; use ${r.profile.health}`,
            });
          }
          const probePort = resolvePort(r.container, httpGet["port"]);
          if (r.port !== undefined && probePort !== undefined && probePort !== r.port) {
            out.push({
              object: pod.owner,
              path: jsonPath(r.container.path, probe, "httpGet", "port"),
              message: `${probe} of container "${r.container.name}" targets port ${probePort} but ${r.profile.title} listens on ${r.port}`,
            });
          }
        }
      }
    }
    return out;
  },
};

const probeMissing: Check = {
  id: "llm.probe-missing",
  severity: "low",
  category: "LLM serving",
  title: "Model runners need a readiness probe",
  remediation: "Add a readinessProbe on the runner's health endpoint so traffic waits until the model is loaded.",
  references: [{ title: "Kubernetes: Define readiness probes", url: "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#define-readiness-probes" }],
  aliases: { kubeScore: "pod-probes" },
  profiles: ["llm-serving"],
  run(index) {
    const out: CheckFinding[] = [];
    for (const pod of index.pods) {
      for (const r of runnersOf(pod)) {
        if (r.port === undefined || asObject(r.container.container["readinessProbe"]) !== undefined) continue;
        out.push({ object: pod.owner, path: jsonPath(r.container.path, "readinessProbe"), message: `${r.profile.title} container "${r.container.name}" has no readinessProbe; it gets traffic before the model is loaded (probe ${r.profile.health})` });
      }
    }
    return out;
  },
};

export const LLM_SERVING_CHECKS: readonly Check[] = [gpuLimits, visibleDevices, modelWritable, runnerExposed, probePath, probeMissing];
