/**
 * A high-water mark of observed time, so that a node's idea of "now" never runs backwards: setting
 * the wall clock back must not make an expired bundle fresh again.
 */
export interface ClockState {
  /** The latest time observed (or vouched for by a verified bundle's signed createdAt), epoch ms. */
  highWaterMs: number;
  /** The clock was once seen more than the tolerance behind the mark; cleared only by a new bundle. */
  tampered: boolean;
}

export const INITIAL_CLOCK: ClockState = Object.freeze({ highWaterMs: 0, tampered: false });

/**
 * Takes a wall-clock reading. The effective time is the later of the reading and the mark, so time
 * never goes backwards; a reading more than `toleranceMs` behind the mark (small steps back are NTP
 * slewing, not an attack) marks the clock tampered. Returns `s` itself when nothing changed, so the
 * per-request path allocates a new state at most once per distinct millisecond.
 */
export function observeClock(s: ClockState, nowMs: number, toleranceMs: number): { state: ClockState; effectiveNowMs: number } {
  if (nowMs > s.highWaterMs) return { state: { highWaterMs: nowMs, tampered: s.tampered }, effectiveNowMs: nowMs };
  if (!s.tampered && nowMs < s.highWaterMs - toleranceMs) {
    return { state: { highWaterMs: s.highWaterMs, tampered: true }, effectiveNowMs: s.highWaterMs };
  }
  return { state: s, effectiveNowMs: s.highWaterMs };
}

/** Raises the mark to a time vouched for by a signature (a verified bundle's createdAt); never lowers it. */
export function raiseHighWater(s: ClockState, trustedMs: number): ClockState {
  return trustedMs > s.highWaterMs ? { highWaterMs: trustedMs, tampered: s.tampered } : s;
}
