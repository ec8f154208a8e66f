/**
 * A refusal the gateway answers in OpenAI's error shape. `type` and `code` follow OpenAI's vocabulary where one
 * exists so that OpenAI clients surface them sensibly; `check` names the stage that refused, for logs and metrics.
 */
export class GatewayError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly check: "identity" | "parse" | "policy" | "budget" | "limit" | "route" | "upstream" | "log";
  readonly headers: Record<string, string>;
  constructor(status: number, check: GatewayError["check"], type: string, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = "GatewayError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.check = check;
    this.headers = headers;
  }
}

export function errorBody(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, code } });
}

export const badRequest = (code: string, message: string) => new GatewayError(400, "parse", "invalid_request_error", code, message);
