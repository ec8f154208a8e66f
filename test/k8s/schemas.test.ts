import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { AuthorizationPolicy } from "@kubernetes-models/istio/security.istio.io/v1";
import { PeerAuthentication } from "@kubernetes-models/istio/security.istio.io/v1beta1";
import { Ajv } from "ajv";
import type { ValidateFunction } from "ajv";
import { Deployment } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Service, ServiceAccount } from "kubernetes-models/v1";
import type { KubeObject } from "../../src/k8s/objects.ts";
import { AUTHZ_COMBOS, authzComboName, COMBOS, comboName, renderAuthzCombo, renderCombo } from "./render-fixtures.ts";
import type { Loose } from "./render-fixtures.ts";

/** A validator throws (kubernetes-models) or returns errors (ajv) for an invalid object. */
type Check = (o: KubeObject) => string | null;

function model(Class: new (data: Loose) => { validate(): void }): Check {
  return (o) => {
    try {
      new Class(structuredClone(o)).validate();
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  };
}

const SCHEMA_DIR = new URL("./schemas/", import.meta.url);
const ajv = new Ajv({ allErrors: true, strict: false });

function schema(file: string): Check {
  const validate: ValidateFunction = ajv.compile(JSON.parse(readFileSync(new URL(file, SCHEMA_DIR), "utf8")));
  return (o) => {
    const kind = o.kind;
    return validate(o) ? null : ajv.errorsText(validate.errors, { dataVar: kind });
  };
}

/** "apiVersion kind" → its validator. Every kind render writes must be here. */
const VALIDATORS = new Map<string, Check>([
  ["v1 Namespace", model(Namespace)],
  ["v1 ServiceAccount", model(ServiceAccount)],
  ["v1 ConfigMap", model(ConfigMap)],
  ["v1 Service", model(Service)],
  ["v1 PersistentVolume", model(PersistentVolume)],
  ["v1 PersistentVolumeClaim", model(PersistentVolumeClaim)],
  ["apps/v1 Deployment", model(Deployment)],
  ["networking.k8s.io/v1 NetworkPolicy", model(NetworkPolicy)],
  ["security.istio.io/v1beta1 PeerAuthentication", model(PeerAuthentication)],
  ["security.istio.io/v1 AuthorizationPolicy", model(AuthorizationPolicy)],
  ["projectcalico.org/v3 NetworkPolicy", schema("networkpolicy.projectcalico.org-v3.json")],
  ["cilium.io/v2 CiliumNetworkPolicy", schema("ciliumnetworkpolicy.cilium.io-v2.json")],
  ["spire.spiffe.io/v1alpha1 ClusterSPIFFEID", schema("clusterspiffeid.spire.spiffe.io-v1alpha1.json")],
  ["policy.sigstore.dev/v1beta1 ClusterImagePolicy", schema("clusterimagepolicy.policy.sigstore.dev-v1beta1.json")],
  ["kyverno.io/v1 ClusterPolicy", schema("clusterpolicy.kyverno.io-v1.json")],
  ["templates.gatekeeper.sh/v1 ConstraintTemplate", schema("constrainttemplate.templates.gatekeeper.sh-v1.json")],
  ["constraints.gatekeeper.sh/v1beta1 EdgewardSignedImages", schema("edgewardsignedimages.constraints.gatekeeper.sh-v1beta1.json")],
  ["config.ratify.deislabs.io/v1beta1 Verifier", schema("verifier.config.ratify.deislabs.io-v1beta1.json")],
  ["config.ratify.deislabs.io/v1beta1 KeyManagementProvider", schema("keymanagementprovider.config.ratify.deislabs.io-v1beta1.json")],
  ["monitoring.coreos.com/v1 ServiceMonitor", schema("servicemonitor.monitoring.coreos.com-v1.json")],
  ["policy.linkerd.io/v1beta3 Server", schema("server.policy.linkerd.io-v1beta3.json")],
  ["policy.linkerd.io/v1alpha1 MeshTLSAuthentication", schema("meshtlsauthentication.policy.linkerd.io-v1alpha1.json")],
  ["policy.linkerd.io/v1alpha1 AuthorizationPolicy", schema("authorizationpolicy.policy.linkerd.io-v1alpha1.json")],
  ["install.istio.io/v1alpha1 IstioOperator", schema("istiooperator.install.istio.io-v1alpha1.json")],
]);

function validate(o: KubeObject): string | null {
  const check = VALIDATORS.get(`${o.apiVersion} ${o.kind}`);
  if (check === undefined) return `no schema for ${o.apiVersion} ${o.kind}`;
  return check(o);
}

describe("every rendered object validates against its schema", () => {
  const seen = new Set<string>();
  for (const c of COMBOS) {
    it(comboName(c), () => {
      for (const o of renderCombo(c)) {
        seen.add(`${o.apiVersion} ${o.kind}`);
        assert.equal(validate(o), null, `${o.kind}/${o.metadata.name}`);
      }
    });
  }
  for (const c of AUTHZ_COMBOS) {
    it(authzComboName(c), () => {
      for (const o of renderAuthzCombo(c)) {
        seen.add(`${o.apiVersion} ${o.kind}`);
        assert.equal(validate(o), null, `${o.kind}/${o.metadata.name}`);
      }
    });
  }

  it("every schema is used by some combination, and every JSON Schema file is listed", () => {
    assert.deepEqual([...VALIDATORS.keys()].filter((k) => !seen.has(k)), []);
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith(".json")).sort();
    const used = [...VALIDATORS.values()].length;
    assert.equal(files.length, used - 10, "10 kinds are validated by kubernetes-models");
    // The CUSTOM policy is one of the kinds @kubernetes-models/istio validates.
    assert.ok(AUTHZ_COMBOS.every((c) => renderAuthzCombo(c).some((o) => o.kind === "AuthorizationPolicy" && (o as Loose).spec.action === "CUSTOM")));
  });
});

describe("the validators reject what the API server would", () => {
  const objects = [...renderCombo({ mesh: "linkerd", cni: "calico", engine: "gatekeeper-ratify" }), ...renderCombo({ mesh: "istio", cni: "cilium", engine: "kyverno" }), ...renderCombo({ mesh: "istio", cni: "kubernetes", engine: "sigstore" })];
  const grpc = renderAuthzCombo({ cni: "kubernetes", engine: "sigstore", transport: "grpc" });
  const http = renderAuthzCombo({ cni: "kubernetes", engine: "sigstore", transport: "http" });
  const operator = (from: readonly KubeObject[] = grpc) => structuredClone(from.find((o) => o.kind === "IstioOperator")!) as Loose;
  const custom = () => structuredClone(grpc.find((o) => o.kind === "AuthorizationPolicy" && (o as Loose).spec.action === "CUSTOM")!) as Loose;
  const find = (kind: string, apiVersion?: string) => structuredClone(objects.find((o) => o.kind === kind && (apiVersion === undefined || o.apiVersion === apiVersion))!) as Loose;

  const BROKEN: { name: string; object: () => Loose }[] = [
    { name: "Deployment: replicas is a string", object: () => Object.assign(find("Deployment"), { spec: { ...find("Deployment").spec, replicas: "two" } }) },
    { name: "NetworkPolicy: a port's protocol is a number", object: () => { const o = find("NetworkPolicy", "networking.k8s.io/v1"); o.spec.ingress = [{ ports: [{ port: 1, protocol: 6 }] }]; return o; } },
    { name: "Istio AuthorizationPolicy: an unknown action", object: () => { const o = find("AuthorizationPolicy", "security.istio.io/v1"); o.spec.action = "PERMIT"; return o; } },
    { name: "Calico NetworkPolicy: a misspelled field", object: () => { const o = find("NetworkPolicy", "projectcalico.org/v3"); o.spec.selectr = o.spec.selector; return o; } },
    { name: "Calico NetworkPolicy: an unknown rule action", object: () => { const o = find("NetworkPolicy", "projectcalico.org/v3"); o.spec.ingress = [{ action: "Permit" }]; return o; } },
    { name: "CiliumNetworkPolicy: no endpointSelector", object: () => { const o = find("CiliumNetworkPolicy"); delete o.spec.endpointSelector; return o; } },
    { name: "CiliumNetworkPolicy: a numeric port", object: () => { const o = find("CiliumNetworkPolicy"); o.spec = { endpointSelector: {}, egress: [{ toPorts: [{ ports: [{ port: 53 }] }] }] }; return o; } },
    { name: "ClusterSPIFFEID: no spiffeIDTemplate", object: () => { const o = find("ClusterSPIFFEID"); delete o.spec.spiffeIDTemplate; return o; } },
    { name: "ClusterImagePolicy: a misspelled authority", object: () => { const o = find("ClusterImagePolicy"); o.spec.authorities[0].keyles = {}; return o; } },
    { name: "Kyverno ClusterPolicy: an unknown failure action", object: () => { const o = find("ClusterPolicy"); o.spec.webhookConfiguration.failurePolicy = "Maybe"; return o; } },
    { name: "ConstraintTemplate: a target without rego's field name", object: () => { const o = find("ConstraintTemplate"); o.spec.targets[0].regoo = "x"; return o; } },
    { name: "Constraint: parameters without repositories", object: () => { const o = find("EdgewardSignedImages"); delete o.spec.parameters.repositories; return o; } },
    { name: "ServiceMonitor: an unknown scheme field", object: () => { const o = find("ServiceMonitor"); o.spec.endpoints[0].schemes = "http"; return o; } },
    { name: "Linkerd Server: no port", object: () => { const o = find("Server"); delete o.spec.port; return o; } },
    { name: "Linkerd MeshTLSAuthentication: empty identities", object: () => { const o = find("MeshTLSAuthentication"); o.spec = { identities: [] }; return o; } },
    { name: "IstioOperator: a misspelled meshConfig key", object: () => { const o = operator(); o.spec.meshConfig.extensionProvider = o.spec.meshConfig.extensionProviders; delete o.spec.meshConfig.extensionProviders; return o; } },
    { name: "IstioOperator: an unknown spec key", object: () => { const o = operator(); o.spec.meshconfig = {}; return o; } },
    { name: "IstioOperator: a provider entry with two providers", object: () => { const o = operator(); o.spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp = operator(http).spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp; return o; } },
    { name: "IstioOperator: a provider entry with no provider", object: () => { const o = operator(); delete o.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc; return o; } },
    { name: "IstioOperator: the gRPC provider without a service", object: () => { const o = operator(); delete o.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.service; return o; } },
    { name: "IstioOperator: the port as a string", object: () => { const o = operator(); o.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.port = "9191"; return o; } },
    { name: "IstioOperator: a timeout not in protobuf's JSON form", object: () => { const o = operator(); o.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.timeout = "200ms"; return o; } },
    { name: "IstioOperator: an HTTP-only field on the gRPC provider", object: () => { const o = operator(); o.spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.pathPrefix = "/check"; return o; } },
    { name: "IstioOperator: a misspelled request-body field", object: () => { const o = operator(http); o.spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestByte = 1; return o; } },
    { name: "Istio CUSTOM AuthorizationPolicy: the provider as a bare name", object: () => { const o = custom(); o.spec.provider = "edgeward-authz"; return o; } },
  ];
  for (const b of BROKEN) {
    it(b.name, () => {
      assert.notEqual(validate(b.object()), null);
    });
  }
});
