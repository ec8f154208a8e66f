import { pino, type Logger } from "pino";

export type { Logger };

/**
 * Structured JSON logs on stderr. Prompt text never reaches the logger; the redact list is a second guard
 * for fields that could carry secrets if a future call site passed them by mistake.
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { service: "edgeward" },
      redact: { paths: ["messages", "prompt", "input", "*.messages", "*.prompt", "key", "*.key", "authorization", "*.authorization"], censor: "[redacted]" },
    },
    destination,
  );
}
