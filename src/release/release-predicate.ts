import { ReleaseError } from "./errors.ts";
import type { CheckedLayout } from "./layout.ts";

/** The predicate type of the release statement: "this image digest is this version of this program". */
export const RELEASE_PREDICATE_TYPE = "https://edgeward.dev/release/v1";

export const TITLE_LABEL = "org.opencontainers.image.title";
export const VERSION_LABEL = "org.opencontainers.image.version";

export interface ReleasePredicate {
  name: string;
  version: string;
  os: string;
  architecture: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What the image says it is, from its (verified) config: title and version labels, os and architecture. */
export function describeImage(layout: CheckedLayout): ReleasePredicate {
  const config = JSON.parse(layout.configBytes.toString("utf8")) as Record<string, unknown>;
  const labels = isRecord(config.config) && isRecord(config.config.Labels) ? config.config.Labels : {};
  const name = labels[TITLE_LABEL];
  const version = labels[VERSION_LABEL];
  if (typeof name !== "string" || typeof version !== "string") {
    throw new ReleaseError("malformed-layout", `config: the image has no ${TITLE_LABEL} and ${VERSION_LABEL} labels to release it under`);
  }
  return { name, version, os: String(config.os), architecture: String(config.architecture) };
}
