export { RunnerTable, UpstreamError, callUpstream, createUpstream, toUpstreamError, type Upstream, type UpstreamCall } from "./upstream.ts";
