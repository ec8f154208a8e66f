import { readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  BundleError,
  buildBundle,
  formatTimestamp,
  isPolicyFile,
  MANIFEST_FILE,
  MAX_ARCHIVE_BYTES,
  parseManifest,
  parseTimestamp,
  readBundleFiles,
  readPolicyDirectory,
  readPublicKey,
  readSignatures,
  readSigningKey,
  RevocationList,
  REVOCATIONS_FILE,
  sha256Hex,
  SIGNATURE_FILE,
  stageAt,
  verifyBundle,
  writeSigningKey,
  type BundleFiles,
  type BundleManifest,
  type TrustedKey,
} from "../bundle/index.ts";
import type { CliIO } from "./io.ts";
import { CONNECTION_USAGE, OperatorError, OperatorUsageError, parseOperatorArgs, withClient } from "./operator-client.ts";

const USAGE = `usage:
  edgeward bundle keygen  --out PREFIX
  edgeward bundle build   DIR --revision N --valid-for 24h [--grace 6h] [--restricted-for 24h] [--name NAME]
                          --key PREFIX.key [--key OTHER.key]... --out FILE.tar.gz
  edgeward bundle verify  BUNDLE --pub PREFIX.pub [--pub OTHER.pub]... [--require-fresh]
                          [--active-revision N [--active-digest SHA256]] [--at 2026-11-23T00:00:00Z]
  edgeward bundle inspect BUNDLE
  edgeward bundle push    FILE.tar.gz --group NAME --server URL (--token-file F | --cert F --key F) [--ca F]

  keygen   write an Ed25519 signing key: PREFIX.key (0600) and PREFIX.pub; prints the key id
  build    sign every file under DIR (policy .yaml/.yml files, optional revocations.json) into a bundle;
           times come from SOURCE_DATE_EPOCH when set, so the same input gives the same bytes
  verify   check a bundle as a gateway would; exit 1 naming the failed check
  inspect  show a bundle's manifest, files and signatures without verifying them
  push     publish a signed bundle to the control plane for a node group; the control plane verifies it
           with its trusted keys and serves it as it is (it never re-signs)

BUNDLE is a .tar.gz file or a directory holding manifest.json and manifest.json.sig.
Durations: a whole number and s, m, h or d (grace and restricted may be 0s).
Exit status: 0 ok, 1 a check failed (or the control plane refused: "bundle push: CODE: message"), 2 usage error.

${CONNECTION_USAGE}`;

class UsageError extends Error {}

type Options = Record<string, { type: "string" | "boolean"; multiple?: boolean }>;

function parse<T extends Options>(argv: string[], options: T, positionals: number) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: positionals > 0 });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(parsed.positionals.length < positionals ? "missing BUNDLE or DIR argument" : `unexpected argument "${parsed.positionals[positionals]}"`);
  }
  return { values: parsed.values, positionals: parsed.positionals };
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(`missing ${flag}`);
  return value;
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "15m", "6h", "7d" → seconds; "0s" (any unit) only where a period may be skipped. */
function duration(text: string, flag: string, allowZero: boolean): number {
  const match = /^(0|[1-9][0-9]{0,9})([smhd])$/.exec(text);
  if (match === null || (!allowZero && match[1] === "0")) {
    throw new UsageError(`${flag} "${text.slice(0, 32)}" is not a duration: use a ${allowZero ? "" : "positive "}whole number and s, m, h or d (e.g. 6h)`);
  }
  return Number(match[1]) * UNITS[match[2]!]!;
}

function formatDuration(seconds: number): string {
  for (const unit of ["d", "h", "m"] as const) {
    if (seconds !== 0 && seconds % UNITS[unit]! === 0) return `${seconds / UNITS[unit]!}${unit}`;
  }
  return `${seconds}s`;
}

function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!/^[1-9][0-9]*$/.test(text) || !Number.isSafeInteger(n)) throw new UsageError(`${flag} must be a positive whole number`);
  return n;
}

/** Build time: SOURCE_DATE_EPOCH (reproducible-builds.org) when set, else the clock. */
function buildTimeMs(): number {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === "") return Date.now();
  if (!/^[0-9]{1,12}$/.test(epoch)) throw new UsageError("SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01T00:00:00Z");
  return Number(epoch) * 1000;
}

/** Writes then renames, so a poller never picks up half a bundle. */
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

function window(m: BundleManifest): string {
  return `${m.notBefore} .. ${m.notAfter}`;
}

function ladder(m: BundleManifest, notAfterMs: number): string {
  const graceEnd = notAfterMs + m.degradation.graceSeconds * 1000;
  const restrictedEnd = graceEnd + m.degradation.restrictedSeconds * 1000;
  return `grace ${formatDuration(m.degradation.graceSeconds)} (to ${formatTimestamp(graceEnd)}), ` +
    `restricted ${formatDuration(m.degradation.restrictedSeconds)} (to ${formatTimestamp(restrictedEnd)}), then locked`;
}

function revocationSummary(list: RevocationList): string {
  const { spiffeIds, serials } = list.counts;
  return `${spiffeIds} SPIFFE ID${spiffeIds === 1 ? "" : "s"}, ${serials} serial${serials === 1 ? "" : "s"}`;
}

async function keygen(argv: string[], io: CliIO): Promise<number> {
  const { values } = parse(argv, { out: { type: "string" } }, 0);
  const written = await writeSigningKey(resolve(io.cwd, required(values.out, "--out")));
  io.stderr(`wrote ${written.keyPath}\nwrote ${written.pubPath}\n`);
  io.stdout(`${written.kid}\n`);
  return 0;
}

async function build(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(argv, {
    revision: { type: "string" },
    "valid-for": { type: "string" },
    grace: { type: "string" },
    "restricted-for": { type: "string" },
    name: { type: "string" },
    key: { type: "string", multiple: true },
    out: { type: "string" },
  }, 1);
  const dir = resolve(io.cwd, positionals[0]!);
  const revision = positiveInteger(required(values.revision, "--revision"), "--revision");
  const validForSeconds = duration(required(values["valid-for"], "--valid-for"), "--valid-for", false);
  const graceSeconds = values.grace === undefined ? 0 : duration(values.grace, "--grace", true);
  const restrictedSeconds = values["restricted-for"] === undefined ? 86400 : duration(values["restricted-for"], "--restricted-for", true);
  const keyPaths = values.key ?? [];
  if (keyPaths.length === 0) throw new UsageError("missing --key");
  const out = resolve(io.cwd, required(values.out, "--out"));
  const nowMs = buildTimeMs();
  const name = values.name ?? basename(dir);

  const keys = [];
  for (const path of keyPaths) keys.push(await readSigningKey(resolve(io.cwd, path)));
  const files = await readPolicyDirectory(dir);
  let built;
  try {
    built = await buildBundle({ files, name, revision, nowMs, validForSeconds, graceSeconds, restrictedSeconds, keys });
  } catch (error) {
    if (error instanceof BundleError && values.name === undefined && error.message.startsWith("bundle: name:")) {
      throw new BundleError(error.check, `${error.message.replace(/^bundle: /, "")} (the name defaults to DIR's; set one with --name)`);
    }
    throw error;
  }
  await writeAtomically(out, built.archive);
  const m = built.manifest;
  io.stdout(
    `wrote ${out}\n` +
    `  name       ${m.name}\n` +
    `  revision   ${m.revision}\n` +
    `  digest     ${sha256Hex(built.files.get(MANIFEST_FILE)!)}\n` +
    `  valid      ${window(m)}\n` +
    `  files      ${Object.keys(m.files).sort().join(", ")}\n` +
    `  signed by  ${[...new Set(keys.map((k) => k.kid))].sort().join(", ")}\n`,
  );
  return 0;
}

async function verify(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(argv, {
    pub: { type: "string", multiple: true },
    "require-fresh": { type: "boolean" },
    "active-revision": { type: "string" },
    "active-digest": { type: "string" },
    at: { type: "string" },
  }, 1);
  const pubPaths = values.pub ?? [];
  if (pubPaths.length === 0) throw new UsageError("missing --pub");
  let active = null;
  if (values["active-revision"] !== undefined) {
    const digest = values["active-digest"] ?? null;
    if (digest !== null && !/^[0-9a-f]{64}$/.test(digest)) throw new UsageError("--active-digest must be a sha256 hex digest");
    active = { revision: positiveInteger(values["active-revision"], "--active-revision"), digest };
  } else if (values["active-digest"] !== undefined) {
    throw new UsageError("--active-digest needs --active-revision");
  }
  let nowMs = Date.now();
  if (values.at !== undefined) {
    const at = parseTimestamp(values.at);
    if (at === null) throw new UsageError("--at must be an RFC 3339 UTC time in whole seconds, e.g. 2026-11-23T00:00:00Z");
    nowMs = at;
  }

  const keys = new Map<string, TrustedKey>();
  for (const path of pubPaths) {
    const key = await readPublicKey(resolve(io.cwd, path));
    keys.set(key.kid, key);
  }
  const files = await readBundleFiles(resolve(io.cwd, positionals[0]!));
  const verified = await verifyBundle(files, { keys, nowMs, active, requireFresh: values["require-fresh"] === true });
  const m = verified.manifest;
  const stage = stageAt({ notAfterMs: verified.notAfterMs, ...m.degradation }, nowMs);
  io.stdout(
    `ok: ${m.name} revision ${m.revision}\n` +
    `  digest     ${verified.digest}\n` +
    `  created    ${m.createdAt}\n` +
    `  valid      ${window(m)}\n` +
    `  ladder     ${ladder(m, verified.notAfterMs)}\n` +
    `  stage      ${stage} at ${formatTimestamp(nowMs)}\n` +
    `  signed by  ${verified.signedBy.join(", ")}\n` +
    `  policies   ${verified.policyFiles.map((p) => p.path).join(", ")}\n` +
    `  revoked    ${revocationSummary(verified.revocations)}\n`,
  );
  return 0;
}

function problem(error: unknown): string {
  if (error instanceof BundleError) return `${error.check}: ${error.message.replace(/^bundle: /, "")}`;
  throw error;
}

/** Shows what a bundle says about itself. Nothing is verified, so nothing shown is to be trusted. */
async function inspect(argv: string[], io: CliIO): Promise<number> {
  const { positionals } = parse(argv, {}, 1);
  const files: BundleFiles = await readBundleFiles(resolve(io.cwd, positionals[0]!));
  const lines: string[] = [];
  let ok = true;
  let manifest: BundleManifest | null = null;
  const manifestBytes = files.get(MANIFEST_FILE);
  try {
    if (manifestBytes === undefined) throw new BundleError("malformed-manifest", `${MANIFEST_FILE} is missing`);
    manifest = parseManifest(manifestBytes);
    const notAfterMs = parseTimestamp(manifest.notAfter)!;
    lines.push(
      `${manifest.name} revision ${manifest.revision} (signature not verified)`,
      `  digest     ${sha256Hex(manifestBytes)}`,
      `  created    ${manifest.createdAt}`,
      `  valid      ${window(manifest)}`,
      `  ladder     ${ladder(manifest, notAfterMs)}`,
    );
  } catch (error) {
    ok = false;
    lines.push(`manifest: ${problem(error)} (signature not verified)`);
  }
  lines.push("files:");
  const listed = manifest?.files ?? {};
  for (const path of [...files.keys()].sort()) {
    if (path === MANIFEST_FILE || path === SIGNATURE_FILE) continue;
    const bytes = files.get(path)!;
    const digest = sha256Hex(bytes);
    const note = manifest === null ? "" : !Object.hasOwn(listed, path) ? "  (not in the manifest)" : listed[path] !== digest ? "  (differs from the manifest)" : "";
    lines.push(`  ${digest}  ${path} (${bytes.length} bytes${isPolicyFile(path) ? ", policy" : ""})${note}`);
  }
  for (const path of Object.keys(listed).sort()) {
    if (!files.has(path)) lines.push(`  ${"-".repeat(64)}  ${path}  (in the manifest, missing from the bundle)`);
  }
  try {
    const signatures = readSignatures(files.get(SIGNATURE_FILE));
    lines.push("signatures:", ...signatures.map((s) => `  kid ${s.kid ?? "(none)"} (${s.alg ?? "no alg"})`));
  } catch (error) {
    ok = false;
    lines.push(`signatures: ${problem(error)}`);
  }
  const revocations = files.get(REVOCATIONS_FILE);
  if (revocations === undefined) {
    lines.push("revocations: none");
  } else {
    try {
      lines.push(`revocations: ${revocationSummary(RevocationList.parse(Buffer.from(revocations).toString("utf8")))}`);
    } catch (error) {
      ok = false;
      lines.push(`revocations: ${problem(error)}`);
    }
  }
  io.stdout(`${lines.join("\n")}\n`);
  return ok ? 0 : 1;
}

/** Publishes a bundle archive, exactly as built, for one node group of the control plane. */
async function push(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseOperatorArgs(argv, { group: { type: "string" } }, 1);
  if (positionals.length === 0) throw new OperatorUsageError("missing FILE.tar.gz argument");
  const group = values.group;
  if (group === undefined || group === "") throw new OperatorUsageError("missing --group");
  const path = resolve(io.cwd, positionals[0]!);
  let archive: Buffer;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new OperatorError("file", `${positionals[0]} is not a regular file`);
    if (info.size > MAX_ARCHIVE_BYTES) throw new OperatorError("too_large", `${positionals[0]} is ${info.size} bytes, more than a bundle's ${MAX_ARCHIVE_BYTES}`);
    archive = await readFile(path);
  } catch (error) {
    if (error instanceof OperatorError) throw error;
    throw new OperatorError("file", `cannot read ${positionals[0]} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  const answer = await withClient(values, io, (client) =>
    client.call("POST", "/v1/bundles", { query: { group }, body: archive, contentType: "application/gzip" })) as
    { group?: unknown; revision?: unknown; digest?: unknown; etag?: unknown } | null;
  if (typeof answer?.revision !== "number") throw new OperatorError("bad_answer", "the control plane's answer names no revision");
  io.stdout(
    `pushed revision ${answer.revision} to group ${String(answer.group)}\n` +
    `  digest  ${String(answer.digest)}\n` +
    `  etag    ${String(answer.etag)}\n`,
  );
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[], io: CliIO) => Promise<number>> = { keygen, build, verify, inspect, push };

/** `edgeward bundle keygen|build|verify|inspect|push …`: signed policy bundles. */
export async function run(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    io.stdout(USAGE);
    return 0;
  }
  const subcommand = command === undefined ? undefined : SUBCOMMANDS[command];
  const label = subcommand === undefined ? "bundle" : `bundle ${command}`;
  try {
    if (subcommand === undefined) throw new UsageError(command === undefined ? "missing subcommand" : `unknown subcommand "${command}"`);
    return await subcommand(rest, io);
  } catch (error) {
    if (error instanceof UsageError || error instanceof OperatorUsageError) {
      io.stderr(`${label}: ${error.message}\n${USAGE}`);
      return 2;
    }
    if (error instanceof BundleError) {
      io.stderr(`${label}: ${problem(error)}\n`);
      return 1;
    }
    const message = error instanceof Error ? error.message.split("\n")[0] : "unexpected failure";
    io.stderr(`${label}: ${message}\n`);
    return 1;
  }
}
