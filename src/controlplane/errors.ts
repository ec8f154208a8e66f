/**
 * A refusal answered as `{"error":{"code","message",...detail}, ...extra}`. `code` is a stable slug that clients
 * branch on; `detail` goes inside `error` (e.g. the refused seq), `extra` beside it (e.g. the node's log head).
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: Record<string, unknown>;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, options: { detail?: Record<string, unknown>; extra?: Record<string, unknown>; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = options.detail ?? {};
    this.extra = options.extra ?? {};
    this.headers = options.headers ?? {};
  }

  body(): Record<string, unknown> {
    return { error: { code: this.code, message: this.message, ...this.detail }, ...this.extra };
  }
}
