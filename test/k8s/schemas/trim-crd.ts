/**
 * Turns one version of a CustomResourceDefinition's openAPIV3Schema into the trimmed
 * JSON Schema files beside this script (see README.md for the sources):
 *
 *   node test/k8s/schemas/trim-crd.ts CRD.yaml KIND VERSION OUT.json
 *
 * Descriptions, defaults, formats and CEL validations are dropped; int-or-string and
 * nullable become JSON Schema types; every object that lists its properties and does
 * not preserve unknown fields gets additionalProperties: false, as the API server's
 * strict field validation rejects unknown fields. Helm template expressions are
 * removed first (the Linkerd CRDs are chart templates).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

type Schema = { [key: string]: unknown };

const DROPPED = new Set([
  "description",
  "default",
  "example",
  "format",
  "x-kubernetes-validations",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type",
  "x-kubernetes-embedded-resource",
]);

function trim(s: Schema): Schema {
  const o: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    if (DROPPED.has(k)) continue;
    if (k === "properties") o[k] = Object.fromEntries(Object.entries(v as Record<string, Schema>).map(([p, sub]) => [p, trim(sub)]));
    else if (k === "items" || k === "not" || (k === "additionalProperties" && typeof v === "object")) o[k] = trim(v as Schema);
    else if (k === "anyOf" || k === "oneOf" || k === "allOf") o[k] = (v as Schema[]).map(trim);
    else o[k] = v;
  }
  if (o["x-kubernetes-int-or-string"] === true) o["type"] = ["integer", "string"];
  if (o["nullable"] === true && typeof o["type"] === "string") o["type"] = [o["type"], "null"];
  const preserve = o["x-kubernetes-preserve-unknown-fields"] === true;
  delete o["x-kubernetes-int-or-string"];
  delete o["x-kubernetes-preserve-unknown-fields"];
  delete o["nullable"];
  if (o["properties"] !== undefined && o["type"] === undefined) o["type"] = "object";
  if (o["properties"] !== undefined && o["additionalProperties"] === undefined && !preserve) o["additionalProperties"] = false;
  return o;
}

const [file, kind, version, out] = process.argv.slice(2);
if (out === undefined) throw new Error("usage: trim-crd.ts CRD.yaml KIND VERSION OUT.json");
const text = readFileSync(file!, "utf8").replace(/\{\{[^}]*\}\}/g, "");
const crd = parseAllDocuments(text)
  .map((d) => d.toJS() as Schema | null)
  .find((d): d is Schema => d?.["kind"] === "CustomResourceDefinition" && (d["spec"] as { names: { kind: string } }).names.kind === kind);
if (crd === undefined) throw new Error(`no CustomResourceDefinition for ${kind} in ${file}`);
const spec = crd["spec"] as { group: string; versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
const v = spec.versions.find((x) => x.name === version);
if (v === undefined) throw new Error(`${kind} has no version ${version}`);
const schema = trim(v.schema.openAPIV3Schema);
const properties = schema["properties"] as Record<string, Schema>;
delete properties["status"];
properties["apiVersion"] = { const: `${spec.group}/${version}` };
properties["kind"] = { const: kind };
properties["metadata"] = { type: "object" };
const required = ((schema["required"] as string[] | undefined) ?? []).filter((r) => r !== "status");
writeFileSync(
  out,
  `${JSON.stringify({ $schema: "http://json-schema.org/draft-07/schema#", title: `${kind} ${spec.group}/${version} (trimmed)`, ...schema, required: [...new Set(["apiVersion", "kind", "metadata", ...required])] }, null, 1)}\n`,
);
