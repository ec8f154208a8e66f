import { stringify } from "yaml";
import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";

/**
 * Falco rules for what the other layers cannot see from inside a container:
 *
 *  - a model file opened for reading by any process that is not in the runner
 *    container of the runner's pods (another container, another pod mounting the
 *    volume, or a process on the node reading the hostPath directory);
 *  - an outbound connection from the gateway or runner containers to anything but
 *    what they need: the gateway dials the runner and DNS (and nothing else — Vault
 *    is reached by its agent, SPIRE over a Unix socket), the runner only DNS.
 *
 * The ConfigMap goes into Falco's namespace; mount it as a rules file (docs/kubernetes.md).
 * The conditions use Falco's own fields only, so they do not depend on the default
 * rules' macros.
 */
export function renderFalco(ctx: RenderContext): KubeObject[] {
  const f = ctx.values.falco;
  if (!f.enabled) return [];
  const ns = ctx.namespace;
  const model = ctx.values.model;
  const modelDirs = [model.path];
  if ("hostPath" in model.volume) modelDirs.push(model.volume.hostPath.path);
  const q = (s: string) => JSON.stringify(s);
  const inPod = (name: string, container: string) =>
    `(k8s.ns.name = ${q(ns)} and k8s.pod.label[app.kubernetes.io/name] = ${q(name)} and container.name = ${q(container)})`;
  const runnerContainer = inPod(ctx.runner.name, ctx.runner.container);
  const gatewayContainer = inPod(ctx.gateway.name, ctx.gateway.container);
  const dnsPort = 53;
  const prefix = `edgeward_${ns.replaceAll("-", "_")}`;
  const rules = [
    {
      macro: `${prefix}_model_files`,
      condition: `(${[...new Set(modelDirs)].map((d) => `fd.name startswith ${q(d.endsWith("/") ? d : `${d}/`)}`).join(" or ")})`,
    },
    {
      rule: `Edgeward model read outside the runner (${ns})`,
      desc: `A process outside the ${ctx.runner.container} container of ${ns}/${ctx.runner.name} opened a model file for reading.`,
      condition:
        `evt.type in (open, openat, openat2) and evt.is_open_read = true and fd.typechar = 'f' and fd.num >= 0 ` +
        `and ${prefix}_model_files and not ${runnerContainer}`,
      output:
        "Model file read outside the runner (file=%fd.name process=%proc.name cmdline=%proc.cmdline user=%user.name " +
        "namespace=%k8s.ns.name pod=%k8s.pod.name container=%container.name image=%container.image.repository)",
      priority: "WARNING",
      tags: ["edgeward", "filesystem", "mitre_collection"],
    },
    {
      rule: `Edgeward unexpected egress (${ns})`,
      desc: `The gateway or runner of ${ns} connected to something other than the runner or DNS.`,
      condition:
        `evt.type = connect and evt.dir = < and (fd.typechar = 4 or fd.typechar = 6) ` +
        `and not fd.sip in ("127.0.0.1", "::1") ` +
        `and ((${gatewayContainer} and not fd.sport in (${ctx.runner.port}, ${dnsPort})) ` +
        `or (${runnerContainer} and not fd.sport in (${dnsPort})))`,
      output:
        "Unexpected outbound connection (destination=%fd.sip:%fd.sport process=%proc.name cmdline=%proc.cmdline " +
        "namespace=%k8s.ns.name pod=%k8s.pod.name container=%container.name image=%container.image.repository)",
      priority: "WARNING",
      tags: ["edgeward", "network", "mitre_exfiltration"],
    },
  ];
  return [
    object("v1", "ConfigMap", `edgeward-${ns}-falco-rules`, f.namespace, "falco", {
      data: { [`edgeward-${ns}-rules.yaml`]: stringify(rules, { lineWidth: 0 }) },
    }),
  ];
}
