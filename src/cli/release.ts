import { constants } from "node:fs";
import { open, rename, unlink, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { BundleError, readPublicKey, readSigningKey, type TrustedKey } from "../bundle/index.ts";
import {
  checkLayout,
  cosignTag,
  describeImage,
  layoutArchive,
  readLayoutArchive,
  readLayoutBytes,
  releasePaths,
  ReleaseError,
  signRelease,
  verifyRelease,
  type LayoutContents,
  type ReleasePaths,
} from "../release/index.ts";
import type { CliIO } from "./io.ts";

const USAGE = `usage:
  edgeward release sign   IMAGE.oci.tar --key PREFIX.key [--repository REGISTRY/REPO]
  edgeward release verify IMAGE.oci.tar --pub PREFIX.pub [--pub OTHER.pub]...

  sign     sign the image's manifest digest, its SBOM and its provenance with an Ed25519 key made by
           \`edgeward bundle keygen\`: DSSE envelopes over in-toto statements about the image, beside it
           (….release.dsse.json, ….cdx.dsse.json, and the signature added to ….provenance.dsse.json), and
           cosign's signature and attestation images (….sig.oci.tar, ….att.oci.tar) to push next to the image
           with skopeo; --repository is the docker-reference the cosign signature names (default: the image title)
  verify   check the image archive and every release file offline: each blob against its descriptor, each
           signature against the trusted keys, each statement, the SBOM and the cosign payload against the
           image's manifest digest; exit 1 naming the failed check

IMAGE.oci.tar is the image archive \`npm run image\` writes (dist/image/edgeward-<version>-<arch>.oci.tar); the
SBOM (….cdx.json) and the provenance (….provenance.dsse.json) are read from beside it.
Exit status: 0 ok, 1 a check failed ("release verify: CHECK: message"), 2 usage error.
`;

class UsageError extends Error {}

/** Release files besides the image are small; anything bigger is not the file we meant to read. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

function parse<T extends Record<string, { type: "string" | "boolean"; multiple?: boolean }>>(argv: string[], options: T) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length !== 1) {
    throw new UsageError(parsed.positionals.length === 0 ? "missing IMAGE.oci.tar argument" : `unexpected argument "${parsed.positionals[1]}"`);
  }
  return { values: parsed.values, image: parsed.positionals[0]! };
}

function pathsFor(io: CliIO, image: string): ReleasePaths {
  const paths = releasePaths(resolve(io.cwd, image));
  if (paths === null) throw new UsageError(`${image} is not an image archive (IMAGE.oci.tar)`);
  return paths;
}

/** A release file's bytes, or undefined when there is none; a link, a special file or an oversized file is refused. */
async function readOptional(path: string): Promise<Buffer | undefined> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    if (code === "ENOENT") return undefined;
    throw new ReleaseError("malformed-archive", `cannot read ${path} (${code === "ELOOP" ? "a symbolic link" : code})`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new ReleaseError("malformed-archive", `${path} is not a regular file`);
    if (info.size > MAX_FILE_BYTES) throw new ReleaseError("malformed-archive", `${path} is larger than ${MAX_FILE_BYTES} bytes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

async function readRequired(path: string, what: string, hint: string): Promise<Buffer> {
  const bytes = await readOptional(path);
  if (bytes === undefined) throw new ReleaseError("signature-missing", `${what} ${path} is missing (${hint})`);
  return bytes;
}

async function readLayoutFile(path: string): Promise<LayoutContents | undefined> {
  const bytes = await readOptional(path);
  return bytes === undefined ? undefined : readLayoutBytes(bytes);
}

/** Writes then renames, so no reader sees half a file. */
async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, bytes, { mode: 0o644 });
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => {});
    throw error;
  }
}

/** Archive times: SOURCE_DATE_EPOCH when set, else the epoch; they never change what is signed. */
function archiveTime(): number {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === "") return 0;
  if (!/^[0-9]{1,12}$/.test(epoch)) throw new UsageError("SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01T00:00:00Z");
  return Number(epoch);
}

const REPOSITORY = /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-]+[a-z0-9]+)*)*$/;

async function sign(argv: string[], io: CliIO): Promise<number> {
  const { values, image } = parse(argv, { key: { type: "string" }, repository: { type: "string" } });
  if (values.key === undefined || values.key === "") throw new UsageError("missing --key");
  if (values.repository !== undefined && !REPOSITORY.test(values.repository)) {
    throw new UsageError(`--repository "${values.repository.slice(0, 100)}" is not a repository name (registry/path, no tag or digest)`);
  }
  const paths = pathsFor(io, image);
  const mtime = archiveTime();
  const key = await readSigningKey(resolve(io.cwd, values.key));
  const layout = checkLayout(await readLayoutArchive(paths.image));
  const signed = signRelease({
    image: layout,
    sbom: await readRequired(paths.sbom, "the SBOM", "npm run image writes it beside the image"),
    provenance: await readRequired(paths.provenance, "the provenance", "npm run image writes it beside the image"),
    previous: { release: await readOptional(paths.release), sbomAttestation: await readOptional(paths.sbomAttestation) },
    key,
    dockerReference: values.repository ?? describeImage(layout).name,
  });
  await writeAtomically(paths.release, signed.release);
  await writeAtomically(paths.sbomAttestation, signed.sbomAttestation);
  await writeAtomically(paths.provenance, signed.provenance);
  await writeAtomically(paths.signature, await layoutArchive(signed.signature.blobs, signed.signature.index, mtime));
  await writeAtomically(paths.attestations, await layoutArchive(signed.attestations.blobs, signed.attestations.index, mtime));
  const digest = layout.manifestDigest;
  const repo = values.repository ?? "REGISTRY/REPO";
  io.stdout(
    `signed ${digest}\n` +
    `  key           ${key.kid}\n` +
    `  release       ${paths.release}\n` +
    `  sbom          ${paths.sbomAttestation}\n` +
    `  provenance    ${paths.provenance}\n` +
    `  cosign        ${paths.signature}\n` +
    `  attestations  ${paths.attestations}\n` +
    `push with:\n` +
    `  skopeo copy oci-archive:${paths.image} docker://${repo}@${digest}\n` +
    `  skopeo copy oci-archive:${paths.signature} docker://${repo}:${cosignTag(digest, "sig")}\n` +
    `  skopeo copy oci-archive:${paths.attestations} docker://${repo}:${cosignTag(digest, "att")}\n`,
  );
  return 0;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

async function verify(argv: string[], io: CliIO): Promise<number> {
  const { values, image } = parse(argv, { pub: { type: "string", multiple: true } });
  const pubPaths = values.pub ?? [];
  if (pubPaths.length === 0) throw new UsageError("missing --pub");
  const paths = pathsFor(io, image);
  const keys = new Map<string, TrustedKey>();
  for (const path of pubPaths) {
    const key = await readPublicKey(resolve(io.cwd, path));
    keys.set(key.kid, key);
  }
  const verified = verifyRelease({
    image: await readLayoutArchive(paths.image),
    release: await readOptional(paths.release),
    sbom: await readOptional(paths.sbom),
    sbomAttestation: await readOptional(paths.sbomAttestation),
    provenance: await readOptional(paths.provenance),
    signature: await readLayoutFile(paths.signature),
    attestations: await readLayoutFile(paths.attestations),
  }, keys);
  const i = verified.image;
  io.stdout(
    `ok: ${i.name} ${i.version} (${i.os}/${i.architecture})\n` +
    `  image         ${verified.manifestDigest}${i.tag === null ? "" : ` (tag ${i.tag})`}\n` +
    `  layers        ${i.layers}, ${megabytes(i.compressedBytes)} compressed, every blob matches its descriptor\n` +
    `  release       signed by ${verified.release.signedBy.join(", ")}\n` +
    `  sbom          CycloneDX ${verified.sbom.specVersion}, ${verified.sbom.components} components, signed by ${verified.sbom.signedBy.join(", ")}\n` +
    `  provenance    ${verified.provenance.buildType} by ${verified.provenance.builderId}, signed by ${verified.provenance.signedBy.join(", ")}\n` +
    `  cosign        signature for ${verified.cosign.dockerReference || "(no docker-reference)"}; attestations ${verified.cosign.attestations.join(", ")}\n`,
  );
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[], io: CliIO) => Promise<number>> = { sign, verify };

/** `edgeward release sign|verify …`: signed, offline-verifiable releases of the container image. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    io.stdout(USAGE);
    return 0;
  }
  const subcommand = command === undefined ? undefined : SUBCOMMANDS[command];
  const label = subcommand === undefined ? "release" : `release ${command}`;
  try {
    if (subcommand === undefined) throw new UsageError(command === undefined ? "missing subcommand" : `unknown subcommand "${command}"`);
    return await subcommand(rest, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`${label}: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof ReleaseError) {
      io.stderr(`${label}: ${error.check}: ${error.message.replace(/^release: /, "")}\n`);
      return 1;
    }
    if (error instanceof BundleError) {
      io.stderr(`${label}: ${error.check}: ${error.message.replace(/^bundle: /, "")}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message.split("\n")[0] : "unexpected failure";
    io.stderr(`${label}: ${message}\n`);
    return 1;
  }
}
