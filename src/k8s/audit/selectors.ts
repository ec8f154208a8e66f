import { asArray, asObject, asString, asStringMap, asStrings } from "./fields.ts";

export type Labels = Readonly<Record<string, string>>;

/** A compiled selector over a label set. `everything` is true when it matches any labels at all (`{}`, `all()`). */
export interface Selector {
  matches(labels: Labels): boolean;
  readonly everything: boolean;
  /** The selector as written, for messages. */
  readonly text: string;
}

export const MATCH_ALL: Selector = { matches: () => true, everything: true, text: "{}" };
export const MATCH_NONE: Selector = { matches: () => false, everything: false, text: "(nothing)" };

/**
 * A Kubernetes LabelSelector (matchLabels + matchExpressions). An empty selector
 * matches everything; an invalid operator matches nothing (the API server would
 * reject it, so nothing it could select is running).
 */
export function labelSelector(v: unknown): Selector {
  const o = asObject(v);
  if (o === undefined) return MATCH_ALL;
  const matchLabels = asStringMap(o["matchLabels"]);
  const expressions = asArray(o["matchExpressions"]).map((e) => {
    const x = asObject(e) ?? {};
    return { key: asString(x["key"]) ?? "", operator: asString(x["operator"]) ?? "", values: asStrings(x["values"]) };
  });
  const labelPairs = Object.entries(matchLabels);
  if (labelPairs.length === 0 && expressions.length === 0) return MATCH_ALL;
  const text = [
    ...labelPairs.map(([k, val]) => `${k}=${val}`),
    ...expressions.map((e) => `${e.key} ${e.operator}${e.values.length ? ` (${e.values.join(",")})` : ""}`),
  ].join(",");
  return {
    everything: false,
    text,
    matches(labels) {
      for (const [k, val] of labelPairs) if (labels[k] !== val) return false;
      for (const e of expressions) {
        const has = Object.hasOwn(labels, e.key);
        const value = labels[e.key];
        switch (e.operator) {
          case "In":
            if (!has || !e.values.includes(value as string)) return false;
            break;
          case "NotIn":
            if (has && e.values.includes(value as string)) return false;
            break;
          case "Exists":
            if (!has) return false;
            break;
          case "DoesNotExist":
            if (has) return false;
            break;
          default:
            return false;
        }
      }
      return true;
    },
  };
}

/** An Istio WorkloadSelector (`selector.matchLabels` only); absent means "every workload in scope". */
export function istioSelector(v: unknown): Selector {
  const labels = asStringMap(asObject(v)?.["matchLabels"]);
  const pairs = Object.entries(labels);
  if (pairs.length === 0) return MATCH_ALL;
  return {
    everything: false,
    text: pairs.map(([k, val]) => `${k}=${val}`).join(","),
    matches: (l) => pairs.every(([k, val]) => l[k] === val),
  };
}

/**
 * Cilium endpoint selectors are LabelSelectors whose keys may carry a source prefix
 * (`k8s:app`, `any:app`). Prefixes are stripped; `k8s:io.kubernetes.pod.namespace`
 * becomes the namespace constraint, returned separately.
 */
export function ciliumSelector(v: unknown): { selector: Selector; namespace?: string } {
  const o = asObject(v);
  if (o === undefined) return { selector: MATCH_ALL };
  const strip = (k: string) => k.replace(/^(k8s|any|reserved|container|unspec):/, "");
  const matchLabels: Record<string, string> = {};
  let namespace: string | undefined;
  for (const [k, val] of Object.entries(asStringMap(o["matchLabels"]))) {
    const key = strip(k);
    if (key === "io.kubernetes.pod.namespace") namespace = val;
    else matchLabels[key] = val;
  }
  const matchExpressions = asArray(o["matchExpressions"]).map((e) => {
    const x = asObject(e) ?? {};
    return { ...x, key: strip(asString(x["key"]) ?? "") };
  });
  const selector = labelSelector({ matchLabels, matchExpressions });
  return namespace === undefined ? { selector } : { selector, namespace };
}

// ---- Calico selector expressions ----------------------------------------------------

type Node =
  | { t: "all" }
  | { t: "global" }
  | { t: "has"; key: string }
  | { t: "cmp"; key: string; op: "==" | "!=" | "contains" | "starts with" | "ends with"; value: string }
  | { t: "in"; key: string; values: string[]; negate: boolean }
  | { t: "not"; e: Node }
  | { t: "and"; a: Node; b: Node }
  | { t: "or"; a: Node; b: Node };

class CalicoParser {
  private pos = 0;
  private readonly src: string;

  constructor(src: string) {
    this.src = src;
  }

  parse(): Node {
    const e = this.or();
    this.ws();
    if (this.pos !== this.src.length) throw new Error(`unexpected "${this.src.slice(this.pos)}"`);
    return e;
  }

  private ws(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos] as string)) this.pos++;
  }

  private eat(token: string): boolean {
    this.ws();
    if (this.src.startsWith(token, this.pos)) {
      this.pos += token.length;
      return true;
    }
    return false;
  }

  private eatWord(word: string): boolean {
    this.ws();
    const re = new RegExp(`^${word.replace(/ /g, "\\s+")}(?![A-Za-z0-9_./-])`);
    const m = re.exec(this.src.slice(this.pos));
    if (m === null) return false;
    this.pos += m[0].length;
    return true;
  }

  private or(): Node {
    let a = this.and();
    while (this.eat("||")) a = { t: "or", a, b: this.and() };
    return a;
  }

  private and(): Node {
    let a = this.unary();
    while (this.eat("&&")) a = { t: "and", a, b: this.unary() };
    return a;
  }

  private unary(): Node {
    this.ws();
    if (this.src.startsWith("!", this.pos) && !this.src.startsWith("!=", this.pos)) {
      this.pos++;
      return { t: "not", e: this.unary() };
    }
    if (this.eat("(")) {
      const e = this.or();
      if (!this.eat(")")) throw new Error("missing )");
      return e;
    }
    if (this.eat("all()")) return { t: "all" };
    if (this.eat("global()")) return { t: "global" };
    if (this.eat("has(")) {
      const key = this.label();
      if (!this.eat(")")) throw new Error("missing ) after has(");
      return { t: "has", key };
    }
    const key = this.label();
    for (const op of ["==", "!="] as const) if (this.eat(op)) return { t: "cmp", key, op, value: this.str() };
    for (const op of ["contains", "starts with", "ends with"] as const) if (this.eatWord(op)) return { t: "cmp", key, op, value: this.str() };
    if (this.eatWord("not in")) return { t: "in", key, values: this.set(), negate: true };
    if (this.eatWord("in")) return { t: "in", key, values: this.set(), negate: false };
    throw new Error(`expected an operator after "${key}"`);
  }

  private label(): string {
    this.ws();
    const m = /^[A-Za-z0-9_./-]+/.exec(this.src.slice(this.pos));
    if (m === null) throw new Error("expected a label");
    this.pos += m[0].length;
    return m[0];
  }

  private str(): string {
    this.ws();
    const q = this.src[this.pos];
    if (q !== "'" && q !== '"') throw new Error("expected a quoted string");
    const end = this.src.indexOf(q, this.pos + 1);
    if (end === -1) throw new Error("unterminated string");
    const s = this.src.slice(this.pos + 1, end);
    this.pos = end + 1;
    return s;
  }

  private set(): string[] {
    if (!this.eat("{")) throw new Error("expected {");
    const values: string[] = [];
    if (this.eat("}")) return values;
    do values.push(this.str());
    while (this.eat(","));
    if (!this.eat("}")) throw new Error("expected }");
    return values;
  }
}

function evalCalico(n: Node, labels: Labels): boolean {
  switch (n.t) {
    case "all":
      return true;
    case "global":
      return false; // selects non-namespaced endpoints (host endpoints), never a pod
    case "has":
      return Object.hasOwn(labels, n.key);
    case "cmp": {
      const v = labels[n.key];
      if (n.op === "!=") return v !== n.value;
      if (v === undefined) return false;
      if (n.op === "==") return v === n.value;
      if (n.op === "contains") return v.includes(n.value);
      if (n.op === "starts with") return v.startsWith(n.value);
      return v.endsWith(n.value);
    }
    case "in": {
      const v = labels[n.key];
      const inSet = v !== undefined && n.values.includes(v);
      return n.negate ? !inSet : inSet;
    }
    case "not":
      return !evalCalico(n.e, labels);
    case "and":
      return evalCalico(n.a, labels) && evalCalico(n.b, labels);
    case "or":
      return evalCalico(n.a, labels) || evalCalico(n.b, labels);
  }
}

/**
 * A Calico selector expression (`app == 'web' && has(tier)`, `all()`). An absent or
 * empty selector means all(), as in Calico. An expression that does not parse selects
 * nothing (calicoctl would refuse it); `error` says why.
 */
export function calicoSelector(v: unknown): Selector & { error?: string } {
  const text = typeof v === "string" ? v.trim() : "";
  if (text === "" || text === "all()") return { ...MATCH_ALL, text: "all()" };
  try {
    const node = new CalicoParser(text).parse();
    return { everything: node.t === "all", text, matches: (labels) => evalCalico(node, labels) };
  } catch (err) {
    return { ...MATCH_NONE, text, error: (err as Error).message };
  }
}
