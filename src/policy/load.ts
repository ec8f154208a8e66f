import { readFile } from "node:fs/promises";
import { PolicyError } from "./error.ts";
import { MAX_POLICY_BYTES, parsePolicies } from "./parse.ts";
import type { CompiledPolicy, PolicySet } from "./types.ts";

/**
 * Reads and compiles policy files. Policies keep the files' order, so "first match wins"
 * follows the order of `paths`. Error messages name each file as given.
 */
export async function loadPolicyFiles(paths: readonly string[]): Promise<PolicySet> {
  const sets: PolicySet[] = [];
  for (const path of paths) sets.push(parsePolicies(await readPolicyFile(path), path));
  return mergePolicySets(sets);
}

/** Reads one policy file as text, refusing oversized files before reading them whole. */
export async function readPolicyFile(path: string, displayName: string = path): Promise<string> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new PolicyError("read", displayName, 0, `cannot read policy file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (data.length > MAX_POLICY_BYTES) {
    throw new PolicyError("size", displayName, 1, `policy file is larger than ${MAX_POLICY_BYTES} bytes`);
  }
  return data.toString("utf8");
}

/** Concatenates policy sets in order; one "<namespace>/<name>" may be defined only once. */
export function mergePolicySets(sets: readonly PolicySet[]): PolicySet {
  const policies: CompiledPolicy[] = [];
  const sources: string[] = [];
  const seen = new Map<string, CompiledPolicy>();
  for (const set of sets) {
    for (const policy of set.policies) {
      const previous = seen.get(policy.id);
      if (previous !== undefined) {
        throw new PolicyError(
          "duplicate",
          policy.file,
          policy.line,
          `policy ${policy.id} is already defined at ${previous.file}:${previous.line}`,
        );
      }
      seen.set(policy.id, policy);
      policies.push(policy);
    }
    sources.push(...set.sources);
  }
  return { policies, sources };
}
