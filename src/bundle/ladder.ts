/**
 * The degradation ladder: how much a node still trusts its policy bundle as time passes beyond the
 * bundle's notAfter, so that a node cut off from the control plane degrades in steps instead of
 * failing open or falling over at once.
 */
export type Stage = "fresh" | "grace" | "restricted" | "locked";

/** The stages in order of decreasing trust. */
export const STAGES: readonly Stage[] = Object.freeze(["fresh", "grace", "restricted", "locked"]);

/** What of a bundle the ladder reads: its notAfter and the manifest's `degradation` periods. */
export interface LadderWindow {
  notAfterMs: number;
  graceSeconds: number;
  restrictedSeconds: number;
}

/**
 * The stage at `nowMs`. Each stage ends at its boundary instant, as a validity window ends at
 * notAfter: fresh before notAfter, grace from notAfter for graceSeconds, restricted for
 * restrictedSeconds after that, then locked. A period of 0 seconds skips its stage.
 */
export function stageAt(w: LadderWindow, nowMs: number): Stage {
  if (nowMs < w.notAfterMs) return "fresh";
  const graceEndMs = w.notAfterMs + w.graceSeconds * 1000;
  if (nowMs < graceEndMs) return "grace";
  return nowMs < graceEndMs + w.restrictedSeconds * 1000 ? "restricted" : "locked";
}

/**
 * The instant after `nowMs` at which the stage next changes, or null once locked (only a new bundle
 * moves a node out of locked). For timers, and for caching a stage until then.
 */
export function nextStageChangeMs(w: LadderWindow, nowMs: number): number | null {
  if (nowMs < w.notAfterMs) return w.notAfterMs;
  const graceEndMs = w.notAfterMs + w.graceSeconds * 1000;
  if (nowMs < graceEndMs) return graceEndMs;
  const restrictedEndMs = graceEndMs + w.restrictedSeconds * 1000;
  return nowMs < restrictedEndMs ? restrictedEndMs : null;
}
