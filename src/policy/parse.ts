import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments } from "yaml";
import type { Node, Pair, YAMLMap } from "yaml";
import { CelCompileError, compileCel } from "./cel.ts";
import { PolicyError } from "./error.ts";
import {
  cidrProblem,
  compileStringMatcher,
  IpMatcher,
  isPathTemplate,
  pathTemplateProblem,
  PortMatcher,
} from "./match.ts";
import type { StringMatcherOptions } from "./match.ts";
import { NamespaceMatcher, ServiceAccountMatcher, serviceAccountProblem, TrustDomainMatcher, trustDomainProblem } from "./principal-match.ts";
import type {
  Action,
  CompiledCondition,
  CompiledOperation,
  CompiledPolicy,
  CompiledRule,
  CompiledSource,
  ConditionAttribute,
  FieldMatch,
  Limits,
  PolicySet,
  TextMatcher,
} from "./types.ts";

/** Bigger policy files are refused before parsing: they are a mistake or an attack. */
export const MAX_POLICY_BYTES = 4 * 1024 * 1024;

const ISTIO_VERSIONS = ["security.istio.io/v1", "security.istio.io/v1beta1"];
const EDGEWARD_VERSION = "edgeward.dev/v1alpha1";
const ACTIONS: readonly Action[] = ["ALLOW", "DENY", "AUDIT", "CUSTOM"];

/** Fields that exist only in edgeward.dev/v1alpha1 documents. */
type Fields = Readonly<Record<string, "istio" | "edgeward">>;

const TOP_FIELDS: Fields = { apiVersion: "istio", kind: "istio", metadata: "istio", spec: "istio", status: "istio" };
const METADATA_FIELDS: Fields = { name: "istio", namespace: "istio", labels: "istio", annotations: "istio" };
const SPEC_FIELDS: Fields = {
  selector: "istio",
  targetRef: "istio",
  targetRefs: "istio",
  action: "istio",
  provider: "istio",
  rules: "istio",
};
const RULE_FIELDS: Fields = { from: "istio", to: "istio", when: "istio", limits: "edgeward", essential: "edgeward" };
const SOURCE_FIELDS: Fields = {
  principals: "istio",
  notPrincipals: "istio",
  requestPrincipals: "istio",
  notRequestPrincipals: "istio",
  namespaces: "istio",
  notNamespaces: "istio",
  serviceAccounts: "istio",
  notServiceAccounts: "istio",
  trustDomains: "istio",
  notTrustDomains: "istio",
  ipBlocks: "istio",
  notIpBlocks: "istio",
  remoteIpBlocks: "istio",
  notRemoteIpBlocks: "istio",
};
const OPERATION_FIELDS: Fields = {
  hosts: "istio",
  notHosts: "istio",
  ports: "istio",
  notPorts: "istio",
  methods: "istio",
  notMethods: "istio",
  paths: "istio",
  notPaths: "istio",
  models: "edgeward",
  notModels: "edgeward",
};
const CONDITION_FIELDS: Fields = { key: "istio", values: "istio", notValues: "istio", cel: "edgeward" };
const LIMIT_FIELDS: Fields = { maxTokens: "edgeward", maxChoices: "edgeward", requestsPerMinute: "edgeward", tokensPerMinute: "edgeward" };

const stripSpiffe = (p: string): string => (p.startsWith("spiffe://") ? p.slice(9) : p);
const PRINCIPAL_OPTIONS: StringMatcherOptions = { normalize: stripSpiffe };
const HOST_OPTIONS: StringMatcherOptions = { caseInsensitive: true, presence: true };
const HEADER_OPTIONS: StringMatcherOptions = { presence: true };
const PATH_OPTIONS: StringMatcherOptions = { pathTemplates: true };

/** Reads one file's YAML nodes, failing with the exact line of the first defect. */
class Reader {
  readonly file: string;
  readonly lines: LineCounter;
  apiVersion = "";
  /** The namespace of the policy being compiled: a `serviceAccounts` value without one names an account there. */
  namespace = "default";

  constructor(file: string, lines: LineCounter) {
    this.file = file;
    this.lines = lines;
  }

  lineAt(offset: number): number {
    return this.lines.linePos(offset).line;
  }

  lineOf(node: Node | Pair | null | undefined): number {
    const n = node as { range?: readonly number[] | null; key?: unknown } | null | undefined;
    if (n?.range) return this.lineAt(n.range[0] ?? 0);
    if (n && "key" in n) return this.lineOf(n.key as Node);
    return 1;
  }

  fail(check: string, node: Node | Pair | null | undefined, detail: string): never {
    throw new PolicyError(check, this.file, this.lineOf(node), detail);
  }

  /** The pairs of a mapping, keyed by field name, refusing unknown fields and misplaced extensions. */
  fields(node: unknown, where: string, allowed: Fields): Map<string, { pair: Pair; value: Node | null }> {
    if (isAlias(node)) this.fail("yaml-alias", node, `${where}: YAML aliases are not supported in policy files`);
    if (!isMap(node)) this.fail("type", node as Node, `${where} must be a mapping`);
    const out = new Map<string, { pair: Pair; value: Node | null }>();
    for (const pair of (node as YAMLMap).items) {
      const keyNode = pair.key;
      if (!isScalar(keyNode) || typeof keyNode.value !== "string") {
        this.fail("type", keyNode as Node, `${where}: field names must be strings`);
      }
      const name = keyNode.value;
      const kind = allowed[name];
      if (kind === undefined) {
        this.fail("unknown-field", keyNode, `unknown field "${name}" in ${where} (allowed: ${Object.keys(allowed).join(", ")})`);
      }
      if (kind === "edgeward" && this.apiVersion !== EDGEWARD_VERSION) {
        this.fail(
          "extension",
          keyNode,
          `field "${name}" in ${where} is an ${EDGEWARD_VERSION} extension; apiVersion ${this.apiVersion} does not allow it`,
        );
      }
      const value = pair.value as Node | null;
      if (isAlias(value)) this.fail("yaml-alias", value, `${where}.${name}: YAML aliases are not supported in policy files`);
      out.set(name, { pair, value });
    }
    return out;
  }

  string(node: Node | null, where: string): string {
    if (!isScalar(node) || typeof node.value !== "string") {
      this.fail("type", node ?? undefined, `${where} must be a string${isScalar(node) && node.value !== null ? ` (quote it: "${String(node.value)}")` : ""}`);
    }
    return node.value;
  }

  nonEmptyString(node: Node | null, where: string): string {
    const s = this.string(node, where);
    if (s === "") this.fail("empty-value", node, `${where} must not be empty`);
    return s;
  }

  stringList(node: Node | null, where: string): string[] {
    if (!isSeq(node)) this.fail("type", node ?? undefined, `${where} must be a list of strings`);
    if (node.items.length === 0) this.fail("empty-list", node, `${where} must not be an empty list (leave the field out instead)`);
    return node.items.map((item, i) => {
      if (isAlias(item)) this.fail("yaml-alias", item, `${where}[${i}]: YAML aliases are not supported in policy files`);
      return this.nonEmptyString(item as Node, `${where}[${i}]`);
    });
  }

  list(node: Node | null, where: string): Node[] {
    if (!isSeq(node)) this.fail("type", node ?? undefined, `${where} must be a list`);
    if (node.items.length === 0) this.fail("empty-list", node, `${where} must not be an empty list (leave the field out instead)`);
    return node.items as Node[];
  }

  boolean(node: Node | null, where: string): boolean {
    if (!isScalar(node) || typeof node.value !== "boolean") this.fail("type", node ?? undefined, `${where} must be true or false`);
    return node.value;
  }

  positiveInt(node: Node | null, where: string): number {
    if (!isScalar(node) || typeof node.value !== "number" || !Number.isSafeInteger(node.value) || node.value <= 0) {
      this.fail("limits", node ?? undefined, `${where} must be a positive integer`);
    }
    return node.value;
  }

  stringMap(node: Node | null, where: string): Record<string, string> {
    if (!isMap(node)) this.fail("type", node ?? undefined, `${where} must be a mapping of strings`);
    // No prototype: a label named "__proto__" or "constructor" is just a label.
    const out: Record<string, string> = Object.create(null);
    for (const pair of node.items) {
      const key = this.string(pair.key as Node, `${where} key`);
      out[key] = this.string(pair.value as Node, `${where}.${key}`);
    }
    return out;
  }
}

/**
 * Parses and compiles a YAML stream of AuthorizationPolicy documents. Pure: the file name
 * is only used in error messages. Throws PolicyError ("file:line: what is wrong").
 */
export function parsePolicies(text: string, file: string): PolicySet {
  if (text.length > MAX_POLICY_BYTES) {
    throw new PolicyError("size", file, 1, `policy file is larger than ${MAX_POLICY_BYTES} bytes`);
  }
  const lines = new LineCounter();
  let docs: ReturnType<typeof parseAllDocuments>;
  try {
    docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    throw new PolicyError("yaml", file, 1, `cannot parse YAML: ${err instanceof RangeError ? "nested too deeply" : (err as Error).message}`);
  }
  const reader = new Reader(file, lines);
  const policies: CompiledPolicy[] = [];
  const seen = new Map<string, number>();
  for (const doc of Array.isArray(docs) ? docs : []) {
    const error = doc.errors[0];
    if (error) throw new PolicyError("yaml", file, reader.lineAt(error.pos[0]), `invalid YAML: ${error.message}`);
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;
    const policy = compilePolicy(reader, doc.contents as Node);
    const previous = seen.get(policy.id);
    if (previous !== undefined) {
      throw new PolicyError("duplicate", file, policy.line, `policy ${policy.id} is already defined at line ${previous}`);
    }
    seen.set(policy.id, policy.line);
    policies.push(policy);
  }
  return { policies, sources: [file] };
}

function compilePolicy(r: Reader, root: Node): CompiledPolicy {
  r.apiVersion = "";
  if (!isMap(root)) r.fail("type", root, "a policy document must be a mapping");
  // apiVersion decides which fields are allowed, so read it before validating the rest.
  const apiPair = root.items.find((p) => isScalar(p.key) && p.key.value === "apiVersion");
  if (!apiPair) r.fail("api-version", root, "apiVersion is required");
  const apiVersion = r.string(apiPair.value as Node, "apiVersion");
  if (apiVersion !== EDGEWARD_VERSION && !ISTIO_VERSIONS.includes(apiVersion)) {
    r.fail("api-version", apiPair.value as Node, `unknown apiVersion "${apiVersion}" (want ${[...ISTIO_VERSIONS, EDGEWARD_VERSION].join(", ")})`);
  }
  r.apiVersion = apiVersion;
  const top = r.fields(root, "document", TOP_FIELDS);
  const kindField = top.get("kind");
  if (!kindField) r.fail("kind", root, "kind is required");
  const kind = r.string(kindField.value, "kind");
  if (kind !== "AuthorizationPolicy") r.fail("kind", kindField.value, `unknown kind "${kind}" (want AuthorizationPolicy)`);

  const metaField = top.get("metadata");
  if (!metaField) r.fail("metadata", root, "metadata.name is required");
  const meta = r.fields(metaField.value, "metadata", METADATA_FIELDS);
  const nameField = meta.get("name");
  if (!nameField) r.fail("metadata", metaField.pair, "metadata.name is required");
  const name = r.nonEmptyString(nameField.value, "metadata.name");
  const nsField = meta.get("namespace");
  const namespace = nsField ? r.nonEmptyString(nsField.value, "metadata.namespace") : "default";
  r.namespace = namespace;
  const labelsField = meta.get("labels");
  if (labelsField) r.stringMap(labelsField.value, "metadata.labels");
  const annotationsField = meta.get("annotations");
  const annotations = annotationsField ? r.stringMap(annotationsField.value, "metadata.annotations") : {};
  // Istio evaluates a dry-run policy only to log what it would have decided; it never enforces it.
  const dryRun = annotations["istio.io/dry-run"]?.toLowerCase() === "true";

  const specField = top.get("spec");
  const spec = specField && specField.value !== null && !(isScalar(specField.value) && specField.value.value === null)
    ? r.fields(specField.value, "spec", SPEC_FIELDS)
    : new Map<string, { pair: Pair; value: Node | null }>();

  for (const f of ["targetRef", "targetRefs"]) {
    const t = spec.get(f);
    if (t) r.fail("unsupported", t.pair, `spec.${f} is not supported by the gateway; use spec.selector.matchLabels`);
  }

  const actionField = spec.get("action");
  const actionText = actionField ? r.string(actionField.value, "spec.action") : "ALLOW";
  if (!ACTIONS.includes(actionText as Action)) {
    r.fail("action", actionField?.value, `unknown spec.action "${actionText}" (want ${ACTIONS.join(", ")})`);
  }
  const action = actionText as Action;

  let provider: string | null = null;
  const providerField = spec.get("provider");
  if (providerField) {
    if (action !== "CUSTOM") r.fail("provider", providerField.pair, "spec.provider is only allowed with action CUSTOM");
    const p = r.fields(providerField.value, "spec.provider", { name: "istio" });
    const pn = p.get("name");
    if (!pn) r.fail("provider", providerField.pair, "spec.provider.name is required");
    provider = r.nonEmptyString(pn.value, "spec.provider.name");
  } else if (action === "CUSTOM") {
    r.fail("provider", actionField?.value, "action CUSTOM requires spec.provider.name");
  }

  let matchLabels: Record<string, string> | null = null;
  const selectorField = spec.get("selector");
  if (selectorField) {
    const sel = r.fields(selectorField.value, "spec.selector", { matchLabels: "istio" });
    const ml = sel.get("matchLabels");
    matchLabels = ml ? r.stringMap(ml.value, "spec.selector.matchLabels") : {};
  }

  const rules: CompiledRule[] = [];
  const rulesField = spec.get("rules");
  if (rulesField) {
    if (!isSeq(rulesField.value)) r.fail("type", rulesField.value ?? rulesField.pair, "spec.rules must be a list");
    rulesField.value.items.forEach((item, i) => rules.push(compileRule(r, item as Node, `spec.rules[${i}]`)));
  }

  return {
    id: `${namespace}/${name}`,
    namespace,
    apiVersion,
    action,
    provider,
    matchLabels,
    dryRun,
    rules,
    file: r.file,
    line: r.lineOf(root),
  };
}

function compileRule(r: Reader, node: Node, where: string): CompiledRule {
  // `- {}` and a bare `-` both mean "a rule that matches everything".
  const fields = isScalar(node) && node.value === null ? new Map() : r.fields(node, where, RULE_FIELDS);
  const fromField = fields.get("from");
  const toField = fields.get("to");
  const whenField = fields.get("when");
  const limitsField = fields.get("limits");
  const essentialField = fields.get("essential");

  const from = fromField
    ? r.list(fromField.value, `${where}.from`).map((item, i) => {
        const w = `${where}.from[${i}]`;
        const f = r.fields(item, w, { source: "istio" });
        const s = f.get("source");
        if (!s) r.fail("required", item, `${w}.source is required`);
        return compileSource(r, s.value, `${w}.source`);
      })
    : null;
  const to = toField
    ? r.list(toField.value, `${where}.to`).map((item, i) => {
        const w = `${where}.to[${i}]`;
        const f = r.fields(item, w, { operation: "istio" });
        const o = f.get("operation");
        if (!o) r.fail("required", item, `${w}.operation is required`);
        return compileOperation(r, o.value, `${w}.operation`);
      })
    : null;
  const when = whenField
    ? r.list(whenField.value, `${where}.when`).map((item, i) => compileCondition(r, item, `${where}.when[${i}]`))
    : [];

  const limits: Limits = {};
  if (limitsField) {
    const l = r.fields(limitsField.value, `${where}.limits`, LIMIT_FIELDS);
    if (l.size === 0) r.fail("limits", limitsField.pair, `${where}.limits must set at least one of ${Object.keys(LIMIT_FIELDS).join(", ")}`);
    for (const [k, v] of l) limits[k as keyof Limits] = r.positiveInt(v.value, `${where}.limits.${k}`);
  }
  const essential = essentialField ? r.boolean(essentialField.value, `${where}.essential`) : false;
  return { from, to, when, limits, essential, line: r.lineOf(node) };
}

function pairOf<M>(
  r: Reader,
  fields: Map<string, { pair: Pair; value: Node | null }>,
  name: string,
  where: string,
  compile: (values: string[], node: Node | null, path: string) => M,
): FieldMatch<M> {
  const notName = `not${name[0]?.toUpperCase()}${name.slice(1)}`;
  const pos = fields.get(name);
  const neg = fields.get(notName);
  return {
    values: pos ? compile(r.stringList(pos.value, `${where}.${name}`), pos.value, `${where}.${name}`) : null,
    notValues: neg ? compile(r.stringList(neg.value, `${where}.${notName}`), neg.value, `${where}.${notName}`) : null,
  };
}

function ipBlocks(r: Reader) {
  return (values: string[], node: Node | null, path: string): IpMatcher => {
    values.forEach((v, i) => {
      const problem = cidrProblem(v);
      if (problem !== null) r.fail("cidr", itemNode(node, i), `${path}[${i}]: ${problem}`);
    });
    return new IpMatcher(values);
  };
}

function ports(r: Reader) {
  return (values: string[], node: Node | null, path: string): PortMatcher =>
    new PortMatcher(
      values.map((v, i) => {
        const n = /^\d{1,5}$/.test(v) ? Number(v) : NaN;
        if (!(n >= 1 && n <= 65535)) r.fail("port", itemNode(node, i), `${path}[${i}]: "${v}" is not a port number (1-65535)`);
        return n;
      }),
    );
}

function itemNode(list: Node | null, i: number): Node | null {
  return isSeq(list) ? ((list.items[i] as Node | undefined) ?? list) : list;
}

/** Istio writes ports as strings, but operators often write `ports: [8080]`; accept both. */
function portsAsStrings(node: Node | null): void {
  if (!isSeq(node)) return;
  for (const item of node.items) {
    if (isScalar(item) && typeof item.value === "number") item.value = String(item.value);
  }
}

function compileSource(r: Reader, node: Node | null, where: string): CompiledSource {
  const f = r.fields(node, where, SOURCE_FIELDS);
  if (f.size === 0) r.fail("empty-value", node, `${where} must set at least one field`);
  const accounts = f.get("serviceAccounts") ?? f.get("notServiceAccounts");
  if (accounts) {
    const other = ["principals", "notPrincipals", "namespaces", "notNamespaces"].find((name) => f.has(name));
    if (other !== undefined) r.fail("service-accounts", accounts.pair, `${where}: serviceAccounts cannot be combined with ${other} (as in Istio)`);
  }
  const strings = (options: StringMatcherOptions) => (values: string[]) => compileStringMatcher(values, options);
  return {
    principals: pairOf(r, f, "principals", where, strings(PRINCIPAL_OPTIONS)),
    requestPrincipals: pairOf(r, f, "requestPrincipals", where, strings({})),
    namespaces: pairOf(r, f, "namespaces", where, (values) => new NamespaceMatcher(values)),
    serviceAccounts: pairOf(r, f, "serviceAccounts", where, serviceAccounts(r)),
    trustDomains: pairOf(r, f, "trustDomains", where, trustDomains(r, true)),
    ipBlocks: pairOf(r, f, "ipBlocks", where, ipBlocks(r)),
    remoteIpBlocks: pairOf(r, f, "remoteIpBlocks", where, ipBlocks(r)),
  };
}

/** Istio's limit on `serviceAccounts` values per list. */
const MAX_SERVICE_ACCOUNTS = 16;

function serviceAccounts(r: Reader) {
  return (values: string[], node: Node | null, path: string): ServiceAccountMatcher => {
    if (values.length > MAX_SERVICE_ACCOUNTS) r.fail("service-accounts", node, `${path}: at most ${MAX_SERVICE_ACCOUNTS} service accounts (as in Istio)`);
    values.forEach((v, i) => {
      const problem = serviceAccountProblem(v);
      if (problem !== null) r.fail("service-accounts", itemNode(node, i), `${path}[${i}]: ${problem}`);
    });
    return new ServiceAccountMatcher(values, r.namespace);
  };
}

/** `from.source.trustDomains` refuses a "/" as Istio does; the `source.trustDomain` condition only checks wildcards. */
function trustDomains(r: Reader, source: boolean) {
  return (values: string[], node: Node | null, path: string): TrustDomainMatcher => {
    values.forEach((v, i) => {
      const problem = trustDomainProblem(v, source);
      if (problem !== null) r.fail("trust-domains", itemNode(node, i), `${path}[${i}]: ${problem}`);
    });
    return new TrustDomainMatcher(values);
  };
}

function compileOperation(r: Reader, node: Node | null, where: string): CompiledOperation {
  const f = r.fields(node, where, OPERATION_FIELDS);
  if (f.size === 0) r.fail("empty-value", node, `${where} must set at least one field`);
  for (const name of ["ports", "notPorts"]) {
    const p = f.get(name);
    if (p) portsAsStrings(p.value);
  }
  const strings = (options: StringMatcherOptions) => (values: string[]) => compileStringMatcher(values, options);
  const paths = (values: string[], list: Node | null, path: string) => {
    values.forEach((v, i) => {
      if (isPathTemplate(v)) {
        const problem = pathTemplateProblem(v);
        if (problem !== null) r.fail("path-template", itemNode(list, i), `${path}[${i}]: ${problem}`);
      }
    });
    return compileStringMatcher(values, PATH_OPTIONS);
  };
  return {
    hosts: pairOf(r, f, "hosts", where, strings(HOST_OPTIONS)),
    ports: pairOf(r, f, "ports", where, ports(r)),
    methods: pairOf(r, f, "methods", where, strings({})),
    paths: pairOf(r, f, "paths", where, paths),
    models: pairOf(r, f, "models", where, strings({})),
  };
}

const HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;
const AUTH_KEY = /^request\.auth\.(principal|audiences|presenter|claims(\[[^\]]+\])+)$/;

type Compile = (values: string[], node: Node | null, path: string) => TextMatcher;

/** Istio's condition keys other than headers, request.auth.* and destination.port: what each reads and how it matches. */
const SIMPLE_KEYS: Readonly<Record<string, (r: Reader) => { attribute: ConditionAttribute; compile: Compile }>> = {
  "source.ip": (r) => ({ attribute: { kind: "source.ip" }, compile: ipBlocks(r) }),
  "remote.ip": (r) => ({ attribute: { kind: "remote.ip" }, compile: ipBlocks(r) }),
  "destination.ip": (r) => ({ attribute: { kind: "destination.ip" }, compile: ipBlocks(r) }),
  "source.namespace": () => ({ attribute: { kind: "source.principal" }, compile: (values) => new NamespaceMatcher(values) }),
  "source.serviceAccount": (r) => ({ attribute: { kind: "source.principal" }, compile: serviceAccounts(r) }),
  "source.trustDomain": (r) => ({ attribute: { kind: "source.principal" }, compile: trustDomains(r, false) }),
  "source.principal": () => ({ attribute: { kind: "source.principal" }, compile: (values) => compileStringMatcher(values, PRINCIPAL_OPTIONS) }),
  "connection.sni": () => ({ attribute: { kind: "connection.sni" }, compile: (values) => compileStringMatcher(values) }),
};

/** Keys Istio itself refuses in AuthorizationPolicy, with its reason. */
const REFUSED_KEYS: readonly [RegExp, string][] = [
  [/^experimental\.envoy\.filters\./, "reads Envoy filter metadata, which the gateway does not have"],
  [/^destination\.namespace$/, "is replaced by metadata.namespace (as in Istio)"],
  [/^destination\.labels\[/, "is replaced by spec.selector (as in Istio)"],
  [/^destination\.(name|user)$/, "was removed with Istio's v1alpha1 RBAC"],
];

function compileCondition(r: Reader, node: Node, where: string): CompiledCondition {
  const f = r.fields(node, where, CONDITION_FIELDS);
  const celField = f.get("cel");
  if (celField) {
    for (const other of ["key", "values", "notValues"]) {
      const o = f.get(other);
      if (o) r.fail("cel", o.pair, `${where}: "cel" cannot be combined with "${other}"`);
    }
    const expression = r.nonEmptyString(celField.value, `${where}.cel`);
    try {
      return { kind: "cel", cel: compileCel(expression) };
    } catch (err) {
      if (err instanceof CelCompileError) r.fail("cel", celField.value, `${where}.cel: ${err.message}`);
      throw err;
    }
  }
  const keyField = f.get("key");
  if (!keyField) r.fail("required", node, `${where}.key is required${r.apiVersion === EDGEWARD_VERSION ? " (or cel)" : ""}`);
  const key = r.nonEmptyString(keyField.value, `${where}.key`);
  if (!f.has("values") && !f.has("notValues")) r.fail("required", node, `${where} needs values or notValues`);

  if (key === "destination.port") {
    for (const name of ["values", "notValues"]) portsAsStrings(f.get(name)?.value ?? null);
    return { kind: "port", key, match: pairOf(r, f, "values", where, ports(r)) };
  }
  const header = HEADER_KEY.exec(key);
  if (header) {
    const compile: Compile = (values) => compileStringMatcher(values, HEADER_OPTIONS);
    return { kind: "key", key, attribute: { kind: "header", name: (header[1] as string).toLowerCase() }, match: pairOf(r, f, "values", where, compile) };
  }
  if (AUTH_KEY.test(key)) {
    return { kind: "key", key, attribute: { kind: "absent" }, match: pairOf(r, f, "values", where, (values) => compileStringMatcher(values)) };
  }
  const simple = Object.hasOwn(SIMPLE_KEYS, key) ? SIMPLE_KEYS[key] : undefined;
  if (simple === undefined) {
    const refused = REFUSED_KEYS.find(([pattern]) => pattern.test(key));
    if (refused !== undefined) r.fail("condition-key", keyField.value, `${where}.key: "${key}" ${refused[1]}`);
    r.fail(
      "condition-key",
      keyField.value,
      `${where}.key: unknown key "${key}" (known: request.headers[<name>], ${Object.keys(SIMPLE_KEYS).join(", ")}, destination.port, request.auth.*)`,
    );
  }
  const { attribute, compile } = simple(r);
  return { kind: "key", key, attribute, match: pairOf(r, f, "values", where, compile) };
}
