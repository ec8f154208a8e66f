export { ConfigError, loadConfig, parseConfig, parseDurationMs, parseHostPort } from "./load.ts";
export type { ConfigInput, GatewayConfig, RunnerConfig } from "./schema.ts";
