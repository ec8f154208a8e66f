import { createPrivateKey } from "node:crypto";
import {
  buildBundle,
  generateSigningKey,
  parsePublicKey,
  type BundleFiles,
  type BundleManifest,
  type SigningKey,
  type TrustedKey,
  type TrustedKeys,
} from "../../src/bundle/index.ts";

/** 2026-11-23T00:00:00Z: the time test bundles are built at unless a test says otherwise. */
export const T0 = Date.UTC(2026, 10, 23);
export const HOUR = 3600;

/** One ALLOW policy: a caller named in it may chat with one model. */
export const POLICY_YAML = `apiVersion: edgeward.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: chat-allow
  namespace: edge
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            principals: ["spiffe://example.org/ns/apps/sa/chat"]
      to:
        - operation:
            methods: ["POST"]
            paths: ["/v1/chat/completions"]
            models: ["tiny"]
`;

export interface TestKey extends SigningKey {
  privatePem: string;
  publicPem: string;
  trusted: TrustedKey;
}

export async function makeKey(): Promise<TestKey> {
  const { kid, privatePem, publicPem } = await generateSigningKey();
  return { kid, key: createPrivateKey(privatePem), privatePem, publicPem, trusted: parsePublicKey(publicPem) };
}

/** The verifier's view: these keys, and only these, are trusted. */
export function trust(...keys: TestKey[]): TrustedKeys {
  return new Map(keys.map((k) => [k.kid, k.trusted]));
}

export function bytes(text: string): Uint8Array {
  return Buffer.from(text);
}

export interface MakeBundleOptions {
  name?: string;
  revision?: number;
  nowMs?: number;
  validForSeconds?: number;
  graceSeconds?: number;
  restrictedSeconds?: number;
  /** policy text for policy.yaml, or path -> text for several files */
  policy?: string | Record<string, string>;
  /** revocations.json: an object (serialised) or raw text; absent when undefined */
  revocations?: unknown;
  /** signing keys; one fresh key when omitted */
  keys?: TestKey[];
}

export interface MadeBundle {
  manifest: BundleManifest;
  files: BundleFiles;
  archive: Buffer;
  keys: TestKey[];
  /** trusts exactly `keys` */
  trusted: TrustedKeys;
}

/**
 * A signed bundle built through buildBundle. Defaults: revision 1, built at T0, valid 24h, grace 6h, restricted 24h,
 * one policy file, no revocations, one fresh key.
 */
export async function makeBundle(opts: MakeBundleOptions = {}): Promise<MadeBundle> {
  const keys = opts.keys ?? [await makeKey()];
  const policy = opts.policy ?? POLICY_YAML;
  const sources = new Map<string, Uint8Array>(
    Object.entries(typeof policy === "string" ? { "policy.yaml": policy } : policy).map(([path, text]) => [path, bytes(text)]),
  );
  if (opts.revocations !== undefined) {
    const text = typeof opts.revocations === "string" ? opts.revocations : `${JSON.stringify(opts.revocations, null, 2)}\n`;
    sources.set("revocations.json", bytes(text));
  }
  const built = await buildBundle({
    files: sources,
    name: opts.name ?? "edge-policy",
    revision: opts.revision ?? 1,
    nowMs: opts.nowMs ?? T0,
    validForSeconds: opts.validForSeconds ?? 24 * HOUR,
    graceSeconds: opts.graceSeconds ?? 6 * HOUR,
    restrictedSeconds: opts.restrictedSeconds ?? 24 * HOUR,
    keys,
  });
  return { ...built, keys, trusted: trust(...keys) };
}

/** A copy of `files` with some files replaced (bytes or text) or removed (null). */
export function withFiles(files: BundleFiles, changes: Record<string, Uint8Array | string | null>): BundleFiles {
  const copy = new Map(files);
  for (const [path, value] of Object.entries(changes)) {
    if (value === null) copy.delete(path);
    else copy.set(path, typeof value === "string" ? bytes(value) : value);
  }
  return copy;
}
