import { parseAllDocuments } from "yaml";
import { parsePolicies } from "../../policy/index.ts";
import type { CompiledPolicy, PolicySet } from "../../policy/index.ts";

/** One policy document as written (for rendering) next to its compiled form (for deciding what applies). */
export interface PolicyDocument {
  readonly compiled: CompiledPolicy;
  readonly name: string;
  readonly namespace: string;
  readonly spec: PolicySpec;
}

export interface PolicySpec {
  selector?: { matchLabels?: Record<string, string> };
  action?: string;
  provider?: { name: string };
  rules?: (PolicyRule | null)[];
}

export interface PolicyRule {
  from?: { source: Record<string, string[]> }[];
  to?: { operation: Record<string, (string | number)[]> }[];
  when?: { key?: string; values?: string[]; notValues?: string[]; cel?: string }[];
  limits?: Record<string, number>;
  essential?: boolean;
}

/** The policy file render reads: its text (put verbatim into the gateway's ConfigMap) and the name errors use. */
export interface PolicySource {
  readonly text: string;
  readonly file: string;
}

/**
 * Validates the policy file exactly as the gateway will (PolicyError "file:line: …" on
 * any defect), then pairs each compiled policy with the document it came from. Pure.
 */
export function readPolicyDocuments(source: PolicySource): { set: PolicySet; documents: PolicyDocument[] } {
  const set = parsePolicies(source.text, source.file);
  const raw = parseAllDocuments(source.text, { uniqueKeys: true })
    .map((d) => d.toJS() as unknown)
    .filter((d): d is Record<string, unknown> => d !== null && d !== undefined);
  // parsePolicies skipped the same empty documents, so the two lists line up.
  const documents = set.policies.map((compiled, i) => {
    const doc = raw[i] as { metadata: { name: string; namespace?: string }; spec?: PolicySpec | null };
    return {
      compiled,
      name: doc.metadata.name,
      namespace: doc.metadata.namespace ?? "default",
      spec: doc.spec ?? {},
    };
  });
  return { set, documents };
}
