export { createGatewayMetrics, registerBundleGauges, registerDecisionLogGauge, registerRunnerMetrics, registerUploadMetrics, type BundleGaugeSource, type GatewayMetrics, type UploadMetrics } from "./metrics.ts";
export { createLogger, type Logger } from "./logger.ts";
