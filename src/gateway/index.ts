export { Gateway, type GatewayOptions } from "./server.ts";
export { GatewayError } from "./errors.ts";
export { SseSplitter, type SseEvent } from "./sse.ts";
export type { GatewayState } from "./state.ts";
