export { createGatewayMetrics, registerBundleGauges, registerDecisionLogGauge, registerUploadMetrics, type BundleGaugeSource, type GatewayMetrics, type UploadMetrics } from "./metrics.ts";
export { createLogger, type Logger } from "./logger.ts";
