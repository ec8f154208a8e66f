export { ConfigError, loadConfig, parseConfig, parseDurationMs, parseHostPort } from "./load.ts";
export type { ConfigInput, BundleSourceConfig, GatewayConfig, RunnerConfig } from "./schema.ts";
