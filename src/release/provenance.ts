import type { ResourceDescriptor } from "./statement.ts";

// SLSA Provenance v1 (slsa.dev/spec/v1.0/provenance): how the image was built, from what.

export const SLSA_PROVENANCE_PREDICATE_TYPE = "https://slsa.dev/provenance/v1";

/** What `npm run image` does, as docs/release.md describes it; the version changes when the recipe's meaning does. */
export const IMAGE_BUILD_TYPE = "https://edgeward.dev/release/image-build/v1";

export interface ProvenanceOptions {
  builderId: string;
  /** versions of the tools that built it, e.g. { node: "v24.11.0", npm: "11.6.2" } */
  builderVersion?: Readonly<Record<string, string>>;
  /** the inputs a user controls: version, architecture, SOURCE_DATE_EPOCH, the source it came from */
  externalParameters: Readonly<Record<string, unknown>>;
  /** the inputs the builder chose (e.g. whether the source tree had uncommitted changes) */
  internalParameters?: Readonly<Record<string, unknown>>;
  /** the source commit first, then every material: Debian packages, the Node binary, the npm lockfile and package */
  resolvedDependencies: readonly ResourceDescriptor[];
  /** what the build wrote besides the image: the SBOM */
  byproducts?: readonly ResourceDescriptor[];
  invocationId?: string;
  startedOn?: string;
  finishedOn?: string;
}

/** The SLSA v1 predicate, fields in the spec's order; optional fields are left out when not given. */
export function provenancePredicate(o: ProvenanceOptions): Record<string, unknown> {
  const buildDefinition: Record<string, unknown> = { buildType: IMAGE_BUILD_TYPE, externalParameters: o.externalParameters };
  if (o.internalParameters !== undefined) buildDefinition.internalParameters = o.internalParameters;
  buildDefinition.resolvedDependencies = o.resolvedDependencies;
  const builder: Record<string, unknown> = { id: o.builderId };
  if (o.builderVersion !== undefined) builder.version = o.builderVersion;
  const metadata: Record<string, string> = {};
  if (o.invocationId !== undefined) metadata.invocationId = o.invocationId;
  if (o.startedOn !== undefined) metadata.startedOn = o.startedOn;
  if (o.finishedOn !== undefined) metadata.finishedOn = o.finishedOn;
  const runDetails: Record<string, unknown> = { builder };
  if (Object.keys(metadata).length > 0) runDetails.metadata = metadata;
  if (o.byproducts !== undefined && o.byproducts.length > 0) runDetails.byproducts = o.byproducts;
  return { buildDefinition, runDetails };
}
