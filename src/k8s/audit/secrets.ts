/**
 * Recognising credentials written in clear: by the name they are stored under
 * (`DB_PASSWORD`, `hfToken`) or by their own shape (a PEM private key, a provider
 * token). Names are compared word by word, so `TOKENIZERS_PARALLELISM` and
 * `MAX_TOKENS` are not tokens and `KEY_FILE` names a file, not a key.
 */

const SENSITIVE_WORDS = new Set(["PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "TOKEN", "SECRET", "APIKEY", "PRIVATEKEY", "CREDENTIAL", "CREDENTIALS"]);

// KEY alone is too common a word (SORT_KEY, ROUTING_KEY, `key:` in selectors): it names a
// credential only after one of these.
const KEY_QUALIFIERS = new Set([
  "API", "ACCESS", "SECRET", "PRIVATE", "ENCRYPTION", "ENCRYPT", "SIGNING", "MASTER", "AUTH", "CLIENT", "SSH", "TLS",
  "HMAC", "JWT", "SESSION", "LICENSE", "ADMIN", "APP", "WEBHOOK", "SERVICE", "ACCOUNT", "SHARED", "CRYPTO", "ROOT",
]);

// Special tokens of a tokenizer (PAD_TOKEN, EOS_TOKEN) are not credentials.
const TOKENIZER_WORDS = new Set(["PAD", "EOS", "BOS", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "STOP", "END", "START"]);

// A final word that makes the value a reference to a secret, or a setting about one, not the secret.
const REFERENCE_WORDS = new Set([
  "FILE", "PATH", "DIR", "NAME", "REF", "URL", "URI", "ENDPOINT", "HEADER", "TYPE", "LENGTH", "LEN", "SIZE",
  "ENABLED", "ENABLE", "DISABLED", "MODE", "TTL", "ID", "COUNT", "LIMIT", "FIELD", "PREFIX", "ISSUER", "AUDIENCE",
  "ALGORITHM", "ALG", "FORMAT", "VERSION", "EXPIRY", "EXPIRES", "TIMEOUT", "POLICY",
]);

export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.toUpperCase());
}

export function isSensitiveName(name: string): boolean {
  const words = nameWords(name);
  if (words.length === 0) return false;
  if (REFERENCE_WORDS.has(words[words.length - 1] as string)) return false;
  return words.some((w, i) => {
    const before = words[i - 1];
    if (w === "KEY") return before !== undefined && KEY_QUALIFIERS.has(before);
    if (w === "TOKEN" && before !== undefined && TOKENIZER_WORDS.has(before)) return false;
    return SENSITIVE_WORDS.has(w);
  });
}

/** Values that cannot be a credential: empty, flags, numbers, paths, variable references, placeholders. */
export function isTrivialValue(value: string): boolean {
  const v = value.trim();
  if (v.length < 4) return true;
  if (/^(true|false|yes|no|on|off|null|none|~)$/i.test(v)) return true;
  if (/^-?\d+(\.\d+)?$/.test(v)) return true;
  if (v.startsWith("/") || v.startsWith("./") || v.startsWith("file:")) return true;
  if (/^\$[({][^)}]*[)}]$/.test(v) || /^\{\{.*\}\}$/.test(v)) return true;
  if (/^<[^>]*>$/.test(v) || /^\[[A-Z_]+\]$/.test(v)) return true;
  if (/^(empty|dummy|placeholder|unused|not[-_ ]?(used|needed|set|required)|redacted|x+|\*+|-+)$/i.test(v)) return true;
  if (/^vault:|^ref\+|^secretref:|^projects\/[^/]+\/secrets\//i.test(v)) return true;
  return false;
}

const TOKEN_SHAPES: readonly [string, RegExp][] = [
  ["a PEM private key", /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/],
  ["an AWS access key id", /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/],
  ["a Hugging Face token", /\bhf_[A-Za-z0-9]{30,}\b/],
  ["an OpenAI-style API key", /\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b/],
  ["a GitHub token", /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b/],
  ["a Slack token", /\bxox[abprs]-[A-Za-z0-9-]{10,}\b/],
];

/** What kind of credential the text contains, if it contains one by its shape. */
export function credentialShape(text: string): string | undefined {
  for (const [what, re] of TOKEN_SHAPES) if (re.test(text)) return what;
  return undefined;
}

/**
 * `key: value` / `key = value` / `"key": "value"` lines inside a config file whose
 * key names a credential and whose value is written out. Returns the first such key.
 */
export function credentialAssignment(text: string): string | undefined {
  const re = /^[ \t]*["']?([A-Za-z0-9_.-]+)["']?[ \t]*[:=][ \t]*["']?([^"'\s#,]+)/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const key = m[1] as string;
    const value = m[2] as string;
    if (isSensitiveName(key) && !isTrivialValue(value) && !/^[{[|>&*]/.test(value)) return key;
  }
  return undefined;
}
