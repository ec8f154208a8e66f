/**
 * A policy file that cannot be loaded, or a CLI input that cannot be used.
 * `check` names the failed check (e.g. "unknown-field", "cidr", "cel"); the message
 * always starts with "file:line: " so an operator can jump straight to the defect.
 */
export class PolicyError extends Error {
  readonly file: string;
  readonly line: number;
  readonly check: string;

  constructor(check: string, file: string, line: number, detail: string) {
    super(`${file}:${line}: ${detail}`);
    this.name = "PolicyError";
    this.check = check;
    this.file = file;
    this.line = line;
  }
}
