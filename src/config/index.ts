export { ConfigError, loadConfig, parseConfig, parseDurationMs, parseHostPort, readYamlConfig } from "./load.ts";
export type { AuthzConfig, ConfigInput, BundleSourceConfig, GatewayConfig, RunnerConfig, UploadConfig, WorkloadConfig } from "./schema.ts";
