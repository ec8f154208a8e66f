/** A decision-log failure; `check` names what failed (e.g. "entry", "hash", "write", "closed"). */
export class DecisionLogError extends Error {
  readonly check: string;

  constructor(check: string, message: string) {
    super(`decision log: ${message}`);
    this.name = "DecisionLogError";
    this.check = check;
  }
}
