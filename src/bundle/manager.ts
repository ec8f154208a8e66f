import { INITIAL_CLOCK, observeClock, raiseHighWater } from "./clock.ts";
import type { ClockState } from "./clock.ts";
import type { TrustedKeys } from "./keys.ts";
import { nextStageChangeMs, stageAt } from "./ladder.ts";
import type { LadderWindow, Stage } from "./ladder.ts";
import type { BundleFiles } from "./manifest.ts";
import { verifyBundle } from "./verify.ts";
import type { VerifiedBundle } from "./verify.ts";

/**
 * What must survive a restart apart from the bundle itself. Kept in its own file so that losing or
 * corrupting the stored bundle cannot reopen the door to an older revision.
 */
export interface PersistedState {
  /** The highest revision ever activated (0 before the first); lower revisions are rollbacks. */
  minRevision: number;
  /** Manifest digest of that revision (null before the first), so it cannot be reused for another manifest. */
  activeDigest: string | null;
  highWaterMs: number;
  tampered: boolean;
}

export interface BundleStatus {
  readonly stage: Stage;
  /** One sentence for operators: why this stage, and until when. */
  readonly reason: string;
  readonly revision: number | null;
  readonly notAfterMs: number | null;
  readonly tampered: boolean;
}

export type OfferResult = { activated: VerifiedBundle } | { unchanged: true };

export interface OfferOptions {
  /**
   * Puts the verified bundle in force (compiles its policy) before the manager commits to it; throwing
   * refuses the bundle with that error, and the manager's state stays as it was.
   */
  accept?: (bundle: VerifiedBundle) => void;
}

export interface BundleManagerOptions {
  keys: TrustedKeys;
  /** How far the wall clock may step back (NTP corrections) before it counts as tampering. */
  clockToleranceMs: number;
  /** What the store loaded, if anything; the bundle itself is offered afterwards. */
  state?: PersistedState | null;
}

const UNCHANGED = Object.freeze({ unchanged: true as const });

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

/**
 * The node's policy-bundle state machine: which verified bundle is active, the rollback floor, the
 * clock's high-water mark, and from those the degradation stage. No I/O and no clock of its own: time
 * comes in as `nowMs`, bytes as BundleFiles, and `persisted()` is what the caller stores.
 */
export class BundleManager {
  readonly #keys: TrustedKeys;
  readonly #toleranceMs: number;
  #active: VerifiedBundle | null = null;
  #window: LadderWindow | null = null;
  #minRevision: number;
  #activeDigest: string | null;
  #clock: ClockState;
  /** Offers run one at a time, so each verifies against the state the previous one left. */
  #offers: Promise<unknown> = Promise.resolve();
  /** The last status, still right while the effective time is before #statusUntilMs and tampering is unchanged. */
  #status: BundleStatus | null = null;
  #statusUntilMs = 0;

  constructor(opts: BundleManagerOptions) {
    if (!Number.isFinite(opts.clockToleranceMs) || opts.clockToleranceMs < 0) {
      throw new RangeError(`clockToleranceMs must be a non-negative number, got ${opts.clockToleranceMs}`);
    }
    this.#keys = opts.keys;
    this.#toleranceMs = opts.clockToleranceMs;
    const state = opts.state ?? null;
    this.#minRevision = state?.minRevision ?? 0;
    this.#activeDigest = state?.activeDigest ?? null;
    this.#clock = state === null ? INITIAL_CLOCK : { highWaterMs: state.highWaterMs, tampered: state.tampered };
  }

  /** The bundle in force, or null (locked) until one verifies. */
  get active(): VerifiedBundle | null {
    return this.#active;
  }

  /**
   * Verifies `files` and activates them. Throws the BundleError of the first failed check (or what
   * `accept` threw), leaving every part of the state as it was. The bundle already active (same
   * manifest digest) is `{ unchanged: true }`, and `accept` is not called for it.
   */
  offer(files: BundleFiles, nowMs: number, opts: OfferOptions = {}): Promise<OfferResult> {
    const result = this.#offers.then(() => this.#offer(files, nowMs, opts));
    this.#offers = result.catch(() => undefined);
    return result;
  }

  async #offer(files: BundleFiles, nowMs: number, opts: OfferOptions): Promise<OfferResult> {
    const { effectiveNowMs } = observeClock(this.#clock, nowMs, this.#toleranceMs);
    // A revision equal to the floor passes only with the floor's own manifest: that is how the stored
    // bundle is reactivated at boot.
    const floor = this.#minRevision > 0 ? { revision: this.#minRevision, digest: this.#activeDigest } : null;
    const verified = await verifyBundle(files, { keys: this.#keys, nowMs: effectiveNowMs, active: floor });
    if (verified.digest === this.#active?.digest) {
      this.#clock = observeClock(this.#clock, nowMs, this.#toleranceMs).state;
      return UNCHANGED;
    }
    opts.accept?.(verified);
    // Only a bundle other than the last one activated vouches for the clock afresh; reactivating the
    // stored one at boot must not wash away tampering seen before the restart. A clock still behind
    // the mark is flagged again by the reading that comes with the offer.
    const isNew = verified.digest !== this.#activeDigest;
    const clock = raiseHighWater({ highWaterMs: this.#clock.highWaterMs, tampered: isNew ? false : this.#clock.tampered }, verified.createdAtMs);
    this.#clock = observeClock(clock, nowMs, this.#toleranceMs).state;
    this.#active = verified;
    this.#window = {
      notAfterMs: verified.notAfterMs,
      graceSeconds: verified.manifest.degradation.graceSeconds,
      restrictedSeconds: verified.manifest.degradation.restrictedSeconds,
    };
    this.#minRevision = verified.manifest.revision;
    this.#activeDigest = verified.digest;
    this.#status = null;
    return { activated: verified };
  }

  /**
   * The stage at wall-clock `nowMs`, read on every request: O(1), and the same object is returned
   * until the stage or the tampered flag changes.
   */
  status(nowMs: number): BundleStatus {
    const { state, effectiveNowMs } = observeClock(this.#clock, nowMs, this.#toleranceMs);
    this.#clock = state;
    const cached = this.#status;
    if (cached !== null && effectiveNowMs < this.#statusUntilMs && cached.tampered === state.tampered) return cached;
    return this.#computeStatus(effectiveNowMs);
  }

  #computeStatus(effectiveNowMs: number): BundleStatus {
    const active = this.#active;
    const window = this.#window;
    const { tampered } = this.#clock;
    const clockNote = tampered
      ? `; the clock was set back more than ${this.#toleranceMs} ms behind the latest time seen, so at least restricted until a new bundle is activated`
      : "";
    let status: BundleStatus;
    if (active === null || window === null) {
      status = Object.freeze({ stage: "locked", reason: `no verified policy bundle is active${clockNote}`, revision: null, notAfterMs: null, tampered });
      this.#statusUntilMs = Number.POSITIVE_INFINITY;
    } else {
      const ladderStage = stageAt(window, effectiveNowMs);
      const nextChangeMs = nextStageChangeMs(window, effectiveNowMs);
      const stage = tampered && (ladderStage === "fresh" || ladderStage === "grace") ? "restricted" : ladderStage;
      const revision = active.manifest.revision;
      status = Object.freeze({
        stage,
        reason: `policy bundle revision ${revision} ${ladderReason(ladderStage, window, nextChangeMs)}${clockNote}`,
        revision,
        notAfterMs: window.notAfterMs,
        tampered,
      });
      this.#statusUntilMs = nextChangeMs ?? Number.POSITIVE_INFINITY;
    }
    this.#status = status;
    return status;
  }

  /** What to store so that a restart keeps the rollback floor and the clock's mark. */
  persisted(): PersistedState {
    return {
      minRevision: this.#minRevision,
      activeDigest: this.#activeDigest,
      highWaterMs: this.#clock.highWaterMs,
      tampered: this.#clock.tampered,
    };
  }
}

/** Stage by the ladder alone (tampering is told apart), with when it ends and what comes next. */
function ladderReason(stage: Stage, window: LadderWindow, nextChangeMs: number | null): string {
  const expired = `expired at ${iso(window.notAfterMs)}`;
  const next = nextChangeMs === null ? "" : `, ${stageAt(window, nextChangeMs)} from ${iso(nextChangeMs)}`;
  switch (stage) {
    case "fresh": return `is valid until ${iso(window.notAfterMs)}`;
    case "grace": return `${expired}; in its grace period${next}`;
    case "restricted": return `${expired}; restricted${next}`;
    case "locked": return `${expired}; its grace and restricted periods are over`;
  }
}
