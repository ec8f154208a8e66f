import type { KubeObject } from "../objects.ts";
import { object } from "./context.ts";
import type { RenderContext } from "./context.ts";
import type { Signer } from "./values.ts";

/** An image the rendered pods run is not matched by any admission.images entry. */
export class AdmissionError extends Error {
  readonly key = "admission.images";
  constructor(detail: string) {
    super(`admission.images: ${detail}`);
    this.name = "AdmissionError";
  }
}

/**
 * True when `pattern` (an admission.images entry) covers the image reference `ref`:
 * "registry/ns/*" covers every repository below registry/ns/, "registry/repo"
 * covers that repository with any tag or digest.
 */
export function patternCovers(pattern: string, ref: string): boolean {
  if (pattern.endsWith("/*")) return ref.startsWith(pattern.slice(0, -1));
  return ref === pattern || ref.startsWith(`${pattern}:`) || ref.startsWith(`${pattern}@`);
}

/**
 * Signed-image admission for the namespace, in the chosen engine. Every variant
 * verifies for real — a cosign signature by the entry's public key, or a Fulcio
 * certificate for the entry's OIDC issuer and subject with the signature in the Rekor
 * transparency log — and refuses an image no entry covers, so nothing runs unsigned:
 *
 *  - sigstore: a ClusterImagePolicy per entry (policy-controller enforces in
 *    namespaces labelled policy.sigstore.dev/include and, by default, denies images no
 *    policy matches);
 *  - kyverno: one ClusterPolicy with a verifyImages rule per entry and a rule refusing
 *    images outside the entries' repositories;
 *  - gatekeeper-ratify: a ConstraintTemplate and its constraint asking Ratify, through
 *    Gatekeeper's external data, to verify every image (failing closed on any error),
 *    plus Ratify's cosign Verifier and the inline keys it trusts.
 */
export function renderAdmission(ctx: RenderContext): KubeObject[] {
  const a = ctx.values.admission;
  const images = [ctx.gateway.image, ctx.runner.image, ctx.helperImage];
  for (const ref of images) {
    if (!a.images.some((s) => patternCovers(s.pattern, ref))) {
      throw new AdmissionError(`no entry covers image "${ref}", so admission would refuse it; add its repository with the key or identity that signs it`);
    }
  }
  switch (a.engine) {
    case "sigstore":
      return sigstore(ctx);
    case "kyverno":
      return kyverno(ctx);
    case "gatekeeper-ratify":
      return gatekeeperRatify(ctx);
  }
}

function clusterName(ctx: RenderContext, suffix: string): string {
  return `edgeward-${ctx.namespace}-${suffix}`;
}

/** policy-controller globs: "*" stays within a path segment, "**" crosses them; Docker Hub is index.docker.io. */
function sigstoreGlobs(pattern: string): string[] {
  const p = pattern.startsWith("docker.io/") ? `index.${pattern}` : pattern;
  return p.endsWith("/*") ? [`${p}*`] : [`${p}:**`, `${p}@**`];
}

function sigstore(ctx: RenderContext): KubeObject[] {
  const a = ctx.values.admission;
  return a.images.map((s, i) => {
    const authority = s.key !== undefined
      ? { name: "key", key: { data: s.key, hashAlgorithm: "sha256" }, ...(s.transparencyLog ? { ctlog: { url: a.rekorUrl } } : {}) }
      : {
          name: "keyless",
          keyless: { url: a.fulcioUrl, identities: [{ issuer: s.keyless!.issuer, subject: s.keyless!.subject }] },
          ctlog: { url: a.rekorUrl },
        };
    return object("policy.sigstore.dev/v1beta1", "ClusterImagePolicy", clusterName(ctx, `images-${i}`), null, "admission", {
      spec: { mode: "enforce", images: sigstoreGlobs(s.pattern).map((glob) => ({ glob })), authorities: [authority] },
    }, { annotations: { "edgeward.dev/pattern": s.pattern } });
  });
}

/** Kyverno wildcards: "*" matches any characters, "/" included. */
function kyvernoReferences(pattern: string): string[] {
  return pattern.endsWith("/*") ? [pattern] : [`${pattern}:*`, `${pattern}@*`];
}

function kyvernoAttestor(s: Signer, rekorUrl: string): Record<string, unknown> {
  return s.key !== undefined
    ? { keys: { publicKeys: s.key, rekor: s.transparencyLog ? { url: rekorUrl } : { ignoreTlog: true } } }
    : { keyless: { issuer: s.keyless!.issuer, subject: s.keyless!.subject, rekor: { url: rekorUrl } } };
}

function kyverno(ctx: RenderContext): KubeObject[] {
  const a = ctx.values.admission;
  const match = { any: [{ resources: { kinds: ["Pod"], namespaces: [ctx.namespace], operations: ["CREATE", "UPDATE"] } }] };
  const allowed = a.images.flatMap((s) => kyvernoReferences(s.pattern)).join(" | ");
  return [
    object("kyverno.io/v1", "ClusterPolicy", clusterName(ctx, "signed-images"), null, "admission", {
      spec: {
        background: false,
        webhookConfiguration: { failurePolicy: "Fail", timeoutSeconds: 30 },
        rules: [
          {
            name: "only-listed-repositories",
            match,
            validate: {
              failureAction: "Enforce",
              message: `images in namespace ${ctx.namespace} must come from a repository whose signatures are verified: ${a.images.map((s) => s.pattern).join(", ")}`,
              pattern: {
                spec: {
                  "=(initContainers)": [{ image: allowed }],
                  "=(ephemeralContainers)": [{ image: allowed }],
                  containers: [{ image: allowed }],
                },
              },
            },
          },
          {
            name: "verify-signatures",
            match,
            verifyImages: a.images.map((s) => ({
              imageReferences: kyvernoReferences(s.pattern),
              failureAction: "Enforce",
              required: true,
              verifyDigest: true,
              mutateDigest: true,
              attestors: [{ count: 1, entries: [kyvernoAttestor(s, a.rekorUrl)] }],
            })),
          },
        ],
      },
    }),
  ];
}

const CONSTRAINT_KIND = "EdgewardSignedImages";

/**
 * Rego for Gatekeeper (v0 syntax, which every Gatekeeper release accepts). The
 * verdict comes from Ratify; the template only refuses what Ratify did not positively
 * verify: an image outside the listed repositories, a provider error, a per-image
 * error, a failed or missing verification result.
 */
const REGO = `package edgewardsignedimages

container_fields := {"containers", "initContainers", "ephemeralContainers"}

images[img] {
  field := container_fields[_]
  img := input.review.object.spec[field][_].image
}

covered(img) {
  repository := input.parameters.repositories[_]
  endswith(repository, "/*")
  startswith(img, trim_suffix(repository, "*"))
}

covered(img) {
  repository := input.parameters.repositories[_]
  not endswith(repository, "/*")
  suffix := [":", "@"][_]
  startswith(img, concat("", [repository, suffix]))
}

violation[{"msg": msg}] {
  img := images[_]
  not covered(img)
  msg := sprintf("image %v is not in a repository whose signatures are verified: %v", [img, input.parameters.repositories])
}

# Ratify verifies each image's signatures against the trust policies of its cosign verifier.
response := external_data({"provider": input.parameters.provider, "keys": [img | images[img]]})

violation[{"msg": msg}] {
  response.system_error != ""
  msg := sprintf("signature verification is unavailable (%v): %v", [input.parameters.provider, response.system_error])
}

violation[{"msg": msg}] {
  count(response.errors) > 0
  msg := sprintf("signature verification failed: %v", [response.errors])
}

verified(result) {
  result[1].isSuccess == true
}

verified(result) {
  result[1].succeeded == true
}

violation[{"msg": msg}] {
  result := response.responses[_]
  not verified(result)
  msg := sprintf("image %v failed signature verification: %v", [result[0], result[1]])
}

answered(img) {
  response.responses[_][0] == img
}

violation[{"msg": msg}] {
  img := images[_]
  not answered(img)
  msg := sprintf("no signature verification result for image %v", [img])
}
`;

function gatekeeperRatify(ctx: RenderContext): KubeObject[] {
  const a = ctx.values.admission;
  const out: KubeObject[] = [
    object("templates.gatekeeper.sh/v1", "ConstraintTemplate", CONSTRAINT_KIND.toLowerCase(), null, "admission", {
      spec: {
        crd: {
          spec: {
            names: { kind: CONSTRAINT_KIND },
            validation: {
              openAPIV3Schema: {
                type: "object",
                properties: {
                  provider: { type: "string" },
                  repositories: { type: "array", items: { type: "string" } },
                },
              },
            },
          },
        },
        targets: [{ target: "admission.k8s.gatekeeper.sh", rego: REGO }],
      },
    }),
    object("constraints.gatekeeper.sh/v1beta1", CONSTRAINT_KIND, clusterName(ctx, "signed-images"), null, "admission", {
      spec: {
        enforcementAction: "deny",
        match: { kinds: [{ apiGroups: [""], kinds: ["Pod"] }], namespaces: [ctx.namespace] },
        parameters: { provider: a.ratifyProvider, repositories: a.images.map((s) => s.pattern) },
      },
    }),
  ];
  const trustPolicies = a.images.map((s, i) => {
    const policy: Record<string, unknown> = {
      name: `edgeward-${ctx.namespace}-${i}`,
      version: "1.0.0",
      // Ratify scopes are a repository, or a prefix ending in "*": the patterns' own syntax.
      scopes: [s.pattern],
      tLogVerify: s.transparencyLog,
      ...(s.transparencyLog ? { rekorURL: a.rekorUrl } : {}),
    };
    if (s.key !== undefined) {
      const provider = clusterName(ctx, `key-${i}`);
      out.push(
        object("config.ratify.deislabs.io/v1beta1", "KeyManagementProvider", provider, null, "admission", {
          spec: { type: "inline", parameters: { contentType: "key", value: s.key } },
        }),
      );
      policy["keys"] = [{ provider }];
    } else {
      policy["keyless"] = { certificateIdentity: s.keyless!.subject, certificateOIDCIssuer: s.keyless!.issuer, ctLogVerify: true };
    }
    return policy;
  });
  out.push(
    object("config.ratify.deislabs.io/v1beta1", "Verifier", clusterName(ctx, "cosign"), null, "admission", {
      spec: { name: "cosign", artifactTypes: "application/vnd.dev.cosign.artifact.sig.v1+json", parameters: { trustPolicies } },
    }),
  );
  return out;
}
