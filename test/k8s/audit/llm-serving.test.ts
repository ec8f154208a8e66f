import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { LLM_SERVING_CHECKS } from "../../../src/k8s/audit/checks/llm-serving.ts";
import { RUNNERS } from "../../../src/k8s/audit/runners.ts";
import { auditFixture, checkCaseTests, rows } from "./support.ts";
import type { CheckCase } from "./support.ts";

const C = "spec.template.spec.containers";

const CASES: CheckCase[] = [
  {
    id: "llm.gpu-limits",
    fail: "llm-serving/gpu-limits.fail.yaml",
    pass: "llm-serving/gpu-limits.pass.yaml",
    expect: [
      ["Deployment/llm/vllm", `${C}[0].resources.limits["nvidia.com/gpu"]`],
      ["Deployment/llm/vllm", `${C}[1].resources.requests["nvidia.com/gpu"]`],
    ],
  },
  {
    id: "llm.nvidia-visible-devices",
    fail: "llm-serving/nvidia-visible-devices.fail.yaml",
    pass: "llm-serving/nvidia-visible-devices.pass.yaml",
    expect: [["Pod/llm/sneaky", "spec.containers[0].env[1]"]],
  },
  {
    id: "llm.model-volume-writable",
    fail: "llm-serving/model-volume-writable.fail.yaml",
    pass: "llm-serving/model-volume-writable.pass.yaml",
    expect: [
      ["Deployment/llm/runners", `${C}[0].volumeMounts[1].readOnly`],
      ["Deployment/llm/runners", `${C}[1].volumeMounts[0].readOnly`],
    ],
  },
  {
    id: "llm.runner-exposed",
    fail: "llm-serving/runner-exposed.fail.yaml",
    pass: "llm-serving/runner-exposed.pass.yaml",
    expect: [
      ["Deployment/open/vllm", ""],
      ["NetworkPolicy/llm/llama-ingress", "spec.ingress[0]"],
      ["NetworkPolicy/llm/llama-ingress", "spec.ingress[1]"],
      ["Service/llm/ollama", "spec.type"],
    ],
  },
  {
    id: "llm.probe-path",
    fail: "llm-serving/probe-path.fail.yaml",
    pass: "llm-serving/probe-path.pass.yaml",
    expect: [
      ["Deployment/llm/runners", `${C}[0].livenessProbe.httpGet.port`],
      ["Deployment/llm/runners", `${C}[0].readinessProbe.httpGet.path`],
      ["Deployment/llm/runners", `${C}[1].readinessProbe.httpGet.path`],
      ["Deployment/llm/runners", `${C}[2].readinessProbe.httpGet.path`],
    ],
  },
  {
    id: "llm.probe-missing",
    fail: "llm-serving/probe-missing.fail.yaml",
    pass: "llm-serving/probe-missing.pass.yaml",
    expect: [["Deployment/llm/vllm", `${C}[0].readinessProbe`]],
  },
];


describe("llm-serving checks", () => {
  checkCaseTests("llm-serving", CASES, LLM_SERVING_CHECKS);

  it("names the path each runner serves in the probe finding", () => {
    const messages = auditFixture("llm-serving/probe-path.fail.yaml", { profiles: ["llm-serving"] })
      .filter((f) => f.checkId === "llm.probe-path")
      .map((f) => f.message);
    assert.deepEqual(messages, [
      'livenessProbe of container "vllm" targets port 8080 but vLLM listens on 8000',
      'readinessProbe of container "vllm" requests /healthz, which vLLM does not serve; use /health',
      'readinessProbe of container "ollama" requests /health, which Ollama does not serve; use /',
      'readinessProbe of container "llama" requests /metrics, which llama.cpp server does not serve; use /health',
    ]);
  });

  it("recognises vLLM by its command (vllm serve, python -m vllm.entrypoints…, in a shell script too) and by VLLM_* settings, not only by its image", () => {
    const found = (path: string) => rows(auditFixture(path, { profiles: ["llm-serving"] })).filter(([id]) => id === "llm.probe-path" || id === "llm.probe-missing");
    assert.deepEqual(found("llm-serving/vllm-by-command.fail.yaml"), [
      ["llm.probe-path", "Deployment/llm/custom-vllm", `${C}[0].readinessProbe.httpGet.path`],
      ["llm.probe-path", "Deployment/llm/custom-vllm", `${C}[1].readinessProbe.httpGet.port`],
      ["llm.probe-missing", "Deployment/llm/custom-vllm", `${C}[2].readinessProbe`],
    ]);
    assert.match(auditFixture("llm-serving/vllm-by-command.fail.yaml", { profiles: ["llm-serving"] }).find((f) => f.path.endsWith("[1].readinessProbe.httpGet.port"))!.message,
      /targets port 8000 but vLLM listens on 9000/);
    assert.deepEqual(found("llm-serving/vllm-by-command.pass.yaml"), []);
  });

  it("the Edgeward runner's probe paths are what src/runners/embedded-server.ts serves", () => {
    const server = readFileSync(new URL("../../../src/runners/embedded-server.ts", import.meta.url), "utf8");
    for (const path of RUNNERS.edgeward.served) assert.ok(server.includes(`case "GET ${path}":`), path);
  });
});
