import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PSS_RESTRICTED_CHECKS } from "../../../src/k8s/audit/checks/pss-restricted.ts";
import { audit } from "../../../src/k8s/audit/index.ts";
import { auditFixture, rows } from "./support.ts";
import type { CheckCase } from "./support.ts";

// Each failing fixture is a restricted-compliant workload with one kind of violation,
// so the whole pss-restricted profile must report exactly the expected findings: no
// other PSS check may fire, and each passing fixture must be clean for the profile.
const CASES: CheckCase[] = [
  {
    id: "pss.host-process",
    fail: "pss-restricted/host-process.fail.yaml",
    pass: "pss-restricted/host-process.pass.yaml",
    expect: [
      ["Pod/app/win-host", "spec.securityContext.windowsOptions.hostProcess"],
      ["Pod/app/win-host", "spec.containers[0].securityContext.windowsOptions.hostProcess"],
    ],
  },
  {
    id: "pss.host-namespaces",
    fail: "pss-restricted/host-namespaces.fail.yaml",
    pass: "pss-restricted/host-namespaces.pass.yaml",
    expect: [
      ["DaemonSet/app/node-agent", "spec.template.spec.hostNetwork"],
      ["DaemonSet/app/node-agent", "spec.template.spec.hostPID"],
      ["DaemonSet/app/node-agent", "spec.template.spec.hostIPC"],
    ],
  },
  {
    id: "pss.privileged",
    fail: "pss-restricted/privileged.fail.yaml",
    pass: "pss-restricted/privileged.pass.yaml",
    expect: [["Deployment/app/web", "spec.template.spec.containers[0].securityContext.privileged"]],
  },
  {
    id: "pss.capabilities-baseline",
    fail: "pss-restricted/capabilities-baseline.fail.yaml",
    pass: "pss-restricted/capabilities-baseline.pass.yaml",
    expect: [
      ["Pod/app/netadmin", "spec.containers[0].securityContext.capabilities.add[1]"],
      ["Pod/app/netadmin", "spec.containers[0].securityContext.capabilities.add[2]"],
    ],
  },
  {
    id: "pss.capabilities-restricted",
    fail: "pss-restricted/capabilities-restricted.fail.yaml",
    pass: "pss-restricted/capabilities-restricted.pass.yaml",
    expect: [
      ["Pod/app/caps", "spec.containers[0].securityContext.capabilities.drop"],
      ["Pod/app/caps", "spec.containers[1].securityContext.capabilities.add[0]"],
      ["Pod/app/caps", "spec.containers[2].securityContext.capabilities.drop"],
    ],
  },
  {
    id: "pss.host-path-volumes",
    fail: "pss-restricted/host-path-volumes.fail.yaml",
    pass: "pss-restricted/host-path-volumes.pass.yaml",
    expect: [["Pod/app/hostpath", "spec.volumes[1].hostPath"]],
  },
  {
    id: "pss.restricted-volumes",
    fail: "pss-restricted/restricted-volumes.fail.yaml",
    pass: "pss-restricted/restricted-volumes.pass.yaml",
    expect: [
      ["Pod/app/nfs", "spec.volumes[1].nfs"],
      ["Pod/app/nfs", "spec.volumes[2].gitRepo"],
    ],
  },
  {
    id: "pss.host-ports",
    fail: "pss-restricted/host-ports.fail.yaml",
    pass: "pss-restricted/host-ports.pass.yaml",
    expect: [
      ["Pod/app/hostport", "spec.initContainers[0].ports[0].hostPort"],
      ["Pod/app/hostport", "spec.containers[0].ports[1].hostPort"],
    ],
  },
  {
    id: "pss.app-armor",
    fail: "pss-restricted/app-armor.fail.yaml",
    pass: "pss-restricted/app-armor.pass.yaml",
    expect: [
      ["StatefulSet/app/db", "spec.template.spec.securityContext.appArmorProfile.type"],
      ["StatefulSet/app/db", "spec.template.spec.containers[0].securityContext.appArmorProfile.type"],
      ["StatefulSet/app/db", 'spec.template.metadata.annotations["container.apparmor.security.beta.kubernetes.io/db"]'],
    ],
  },
  {
    id: "pss.selinux",
    fail: "pss-restricted/selinux.fail.yaml",
    pass: "pss-restricted/selinux.pass.yaml",
    expect: [
      ["Pod/app/selinux", "spec.securityContext.seLinuxOptions.type"],
      ["Pod/app/selinux", "spec.containers[0].securityContext.seLinuxOptions.user"],
      ["Pod/app/selinux", "spec.containers[0].securityContext.seLinuxOptions.role"],
    ],
  },
  {
    id: "pss.proc-mount",
    fail: "pss-restricted/proc-mount.fail.yaml",
    pass: "pss-restricted/proc-mount.pass.yaml",
    expect: [["Pod/app/unmasked", "spec.containers[0].securityContext.procMount"]],
  },
  {
    id: "pss.seccomp-profile-baseline",
    fail: "pss-restricted/seccomp-profile-baseline.fail.yaml",
    pass: "pss-restricted/seccomp-profile-baseline.pass.yaml",
    expect: [
      ["Pod/app/unconfined", "spec.securityContext.seccompProfile.type"],
      ["Pod/app/unconfined", "spec.containers[1].securityContext.seccompProfile.type"],
    ],
  },
  {
    id: "pss.seccomp-profile-restricted",
    fail: "pss-restricted/seccomp-profile-restricted.fail.yaml",
    pass: "pss-restricted/seccomp-profile-restricted.pass.yaml",
    expect: [
      ["Pod/app/unset", "spec.securityContext.seccompProfile.type"],
      ["Pod/app/partly", "spec.containers[1].securityContext.seccompProfile.type"],
    ],
  },
  {
    id: "pss.sysctls",
    fail: "pss-restricted/sysctls.fail.yaml",
    pass: "pss-restricted/sysctls.pass.yaml",
    expect: [["Pod/app/sysctls", "spec.securityContext.sysctls[1].name"]],
  },
  {
    id: "pss.probe-host",
    fail: "pss-restricted/probe-host.fail.yaml",
    pass: "pss-restricted/probe-host.pass.yaml",
    expect: [
      ["Pod/app/probes", "spec.containers[0].livenessProbe.httpGet.host"],
      ["Pod/app/probes", "spec.containers[0].lifecycle.preStop.tcpSocket.host"],
    ],
  },
  {
    id: "pss.allow-privilege-escalation",
    fail: "pss-restricted/allow-privilege-escalation.fail.yaml",
    pass: "pss-restricted/allow-privilege-escalation.pass.yaml",
    expect: [
      ["CronJob/app/sync", "spec.jobTemplate.spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"],
      ["CronJob/app/sync", "spec.jobTemplate.spec.template.spec.containers[1].securityContext.allowPrivilegeEscalation"],
    ],
  },
  {
    id: "pss.run-as-non-root",
    fail: "pss-restricted/run-as-non-root.fail.yaml",
    pass: "pss-restricted/run-as-non-root.pass.yaml",
    expect: [
      ["Pod/app/root", "spec.securityContext.runAsNonRoot"],
      ["Pod/app/root", "spec.containers[0].securityContext.runAsNonRoot"],
      ["Pod/app/partly", "spec.containers[1].securityContext.runAsNonRoot"],
    ],
  },
  {
    id: "pss.run-as-user",
    fail: "pss-restricted/run-as-user.fail.yaml",
    pass: "pss-restricted/run-as-user.pass.yaml",
    expect: [
      ["Pod/app/uid0", "spec.securityContext.runAsUser"],
      ["Pod/app/uid0", "spec.containers[0].securityContext.runAsUser"],
    ],
  },
];

describe("pss-restricted checks", () => {
  it("every check in the profile has a case", () => {
    assert.deepEqual(CASES.map((c) => c.id).sort(), PSS_RESTRICTED_CHECKS.map((c) => c.id).sort());
  });

  for (const c of CASES) {
    describe(c.id, () => {
      it("reports exactly the violations in the failing fixture, and nothing else in the profile", () => {
        const got = rows(auditFixture(c.fail, { profiles: ["pss-restricted"] }));
        assert.deepEqual(got, c.expect.map(([key, path]) => [c.id, key, path]));
      });

      it("is clean on the passing fixture (as is the whole profile)", () => {
        assert.deepEqual(rows(auditFixture(c.pass, { profiles: ["pss-restricted"] })), []);
      });
    });
  }

  it("a workload with no securityContext fails the restricted checks the admission controller would", () => {
    const objects = [
      {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "bare", namespace: "app" },
        spec: { template: { spec: { containers: [{ name: "app", image: "app:1" }] } } },
      },
    ];
    assert.deepEqual(rows(audit(objects, { profiles: ["pss-restricted"] }).findings), [
      ["pss.capabilities-restricted", "Deployment/app/bare", "spec.template.spec.containers[0].securityContext.capabilities.drop"],
      ["pss.seccomp-profile-restricted", "Deployment/app/bare", "spec.template.spec.securityContext.seccompProfile.type"],
      ["pss.allow-privilege-escalation", "Deployment/app/bare", "spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation"],
      ["pss.run-as-non-root", "Deployment/app/bare", "spec.template.spec.securityContext.runAsNonRoot"],
    ]);
  });
});
