// The embedded llama.cpp runner is not re-exported here: it loads native code, which the gateway process must
// never load (a model crash must not take the gateway down). Its entry is ./embedded-server.ts, used by
// `edgeward runner` in a process of its own.
export { RunnerTable, UpstreamError, callUpstream, callUpstreamBuffered, createUpstream, releaseSlot, takeSlot, toUpstreamError, type Upstream, type UpstreamCall, type BufferedAnswer, MAX_BUFFERED_ANSWER_BYTES } from "./upstream.ts";
export { buildTinyModel, writeTinyModel } from "./tiny-model.ts";
export { markDown, markUp, type RunnerHealth } from "./health.ts";
export { RunnerSupervisor, type SupervisorOptions } from "./supervisor.ts";
