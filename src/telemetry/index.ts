export { createGatewayMetrics, registerBundleGauges, type BundleGaugeSource, type GatewayMetrics } from "./metrics.ts";
export { createLogger, type Logger } from "./logger.ts";
