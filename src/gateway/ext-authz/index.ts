export { Authorizer, type AuthzState, type CheckIdentity, type CheckInput, type CheckResult } from "./check.ts";
export { AuthzServer } from "./server.ts";
export { AuthzService, type AuthzServiceOptions } from "./service.ts";
export { createAuthzMetrics, type AuthzMetrics, type AuthzTransport } from "./metrics.ts";
export { EXTERNAL_AUTH_PROTO, PROTO_DIR, PROTO_OPTIONS } from "./grpc-server.ts";
