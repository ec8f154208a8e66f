import type { Logger } from "../telemetry/index.ts";
import { claimFindings, type NewFinding } from "./analysis.ts";
import { KeyedLock } from "./keyed-lock.ts";
import type { NodeTouch, Storage } from "./storage/index.ts";

/**
 * Adds a finding unless the node's latest finding of that kind says the same (same seq, same words): a node repeating
 * one claim on every call, or an uploader retrying one refused batch, raises it once. True when it was added.
 */
export async function raiseOnce(storage: Storage, finding: NewFinding): Promise<boolean> {
  const [last] = await storage.listFindings({ node: finding.node, kind: finding.kind, limit: 1 });
  if (last !== undefined && last.seqFrom === finding.seqFrom && last.explanation === finding.explanation) return false;
  await storage.addFindings([finding]);
  return true;
}

/**
 * Checks what each node call claims (its x-edgeward-* headers) against what the centre knows, around the pure check
 * in analysis.ts. One node's checks run one at a time, so two calls repeating a claim do not both raise it.
 */
export class ClaimCheck {
  readonly #storage: Storage;
  readonly #logger: Logger;
  readonly #lock = new KeyedLock();

  constructor(storage: Storage, logger: Logger) {
    this.#storage = storage;
    this.#logger = logger;
  }

  /** Raises the contradictions of one call's claims; a storage failure is logged, never answered to the node. */
  async check(node: { id: string; group: string }, claimed: NonNullable<NodeTouch["claimed"]>, now: string): Promise<void> {
    const revision = claimed.bundleRevision;
    if (revision === undefined && claimed.logSeq === undefined) return;
    const storage = this.#storage;
    await this.#lock.run(node.id, async () => {
      const [published, newest, head] = await Promise.all([
        revision === undefined ? null : storage.bundleMeta(node.group, revision),
        revision === undefined ? [] : storage.bundleHistory(node.group, 1),
        claimed.logSeq === undefined ? null : storage.logHead(node.id),
      ]);
      const findings = claimFindings({
        node: node.id, group: node.group, claimed, revisionPublished: published !== null,
        newestRevision: newest[0]?.revision ?? null, ackSeq: head?.ackSeq ?? 0, now,
      });
      for (const finding of findings) {
        if (await raiseOnce(storage, finding)) this.#logger.warn({ node: node.id, kind: finding.kind }, "a node's claim contradicts the control plane");
      }
    }).catch((error: Error) => this.#logger.error({ node: node.id, err: error.message }, "checking a node's claims failed"));
  }
}
