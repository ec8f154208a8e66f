export { ConfigError, checkConfigFiles, loadConfig, parseConfig, parseDurationMs, parseHostPort, readYamlConfig } from "./load.ts";
export type { AuthzConfig, ConfigInput, BundleSourceConfig, EmbeddedRunnerConfig, GatewayConfig, RunnerConfig, UploadConfig, WorkloadConfig } from "./schema.ts";
