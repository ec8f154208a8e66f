import { PROFILES } from "./check.ts";
import type { Check, ProfileName } from "./check.ts";
import { LLM_SERVING_CHECKS } from "./checks/llm-serving.ts";
import { PSS_RESTRICTED_CHECKS } from "./checks/pss-restricted.ts";
import { ZERO_TRUST_CHECKS } from "./checks/zero-trust.ts";

/** Every check, in the order reports list them. */
export const ALL_CHECKS: readonly Check[] = [...PSS_RESTRICTED_CHECKS, ...ZERO_TRUST_CHECKS, ...LLM_SERVING_CHECKS];

export function isProfileName(name: string): name is ProfileName {
  return (PROFILES as readonly string[]).includes(name);
}

/** The checks of the given profiles (all profiles when none are given), each once, in ALL_CHECKS order. */
export function checksFor(profiles: readonly ProfileName[] = PROFILES): Check[] {
  const wanted = profiles.length === 0 ? PROFILES : profiles;
  return ALL_CHECKS.filter((c) => c.profiles.some((p) => wanted.includes(p)));
}

export function checkById(id: string): Check | undefined {
  return ALL_CHECKS.find((c) => c.id === id);
}
