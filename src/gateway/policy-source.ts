import { createHash } from "node:crypto";
// The revocation list alone: a gateway on policy files does not load the bundle tooling (tar, JWS).
import { RevocationList } from "../bundle/revocations.ts";
import type { VerifiedBundle } from "../bundle/index.ts";
import { mergePolicySets, parsePolicies, readPolicyFile } from "../policy/index.ts";
import type { ActivePolicy } from "./state.ts";

/** Before any bundle verifies: nothing is allowed (the ladder says `locked`). */
export const NO_POLICY: ActivePolicy = Object.freeze({ set: Object.freeze({ policies: [], sources: [] }), revision: null, revocations: RevocationList.EMPTY });

/** A verified bundle's policy files, compiled as one set; a policy error refuses the whole bundle. */
export function compileBundle(bundle: VerifiedBundle): ActivePolicy {
  const { name, revision } = bundle.manifest;
  const set = mergePolicySets(bundle.policyFiles.map((f) => parsePolicies(f.text, `${name}@${revision}:${f.path}`)));
  return { set, revision: `${name}@${revision}`, revocations: bundle.revocations };
}

/** Reads each policy file once: the revision is the hash of exactly the text that was compiled. */
export async function loadPolicy(files: readonly string[]): Promise<ActivePolicy> {
  const texts = await Promise.all(files.map((f) => readPolicyFile(f)));
  const set = mergePolicySets(texts.map((text, i) => parsePolicies(text, files[i]!)));
  const hash = createHash("sha256");
  for (const text of texts) hash.update(text);
  return { set, revision: `sha256:${hash.digest("hex").slice(0, 16)}`, revocations: RevocationList.EMPTY };
}
