import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { parseXfcc, trustedPeers, xfccIdentity, XfccError, XFCC_LIMITS, type XfccElement, type XfccKey } from "../../src/identity/index.ts";

/** Asserts that `fn` throws an XfccError with `check`. */
function throwsCheck(fn: () => unknown, check: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof XfccError, `expected XfccError, got ${String(err)}`);
    assert.equal(err.check, check, err.message);
    assert.match(err.message, /^xfcc: /);
    return true;
  });
}

/** Only XfccError may escape; anything else (TypeError, RangeError…) fails the property. */
function onlyXfccErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof XfccError)) throw err;
  }
}

const HASH = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688";

describe("parseXfcc: Envoy's documented examples", () => {
  it("one client certificate with a URI SAN", () => {
    const h = `By=http://frontend.lyft.com;Hash=${HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`;
    assert.deepEqual(parseXfcc(h), [{
      by: "http://frontend.lyft.com", hash: HASH, subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client",
      uri: ["http://testclient.lyft.com"], dns: [],
    }]);
  });

  it("two client certificates (two hops), first hop first", () => {
    const h = `By=http://frontend.lyft.com;Hash=${HASH};URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com`;
    const elements = parseXfcc(h);
    assert.equal(elements.length, 2);
    assert.deepEqual(elements.map((e) => [e.by, e.uri]), [
      ["http://frontend.lyft.com", ["http://testclient.lyft.com"]],
      ["http://backend.lyft.com", ["http://frontend.lyft.com"]],
    ]);
  });

  it("URI and several DNS SANs", () => {
    const h = `By=http://frontend.lyft.com;Hash=${HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com`;
    assert.deepEqual(parseXfcc(h)[0]!.dns, ["lyft.com", "www.lyft.com"]);
  });

  it("what Istio's sidecar writes (empty Subject, spiffe URIs), and Envoy's `URI=` for a certificate without URI SAN", () => {
    const h = `By=spiffe://cluster.local/ns/llm/sa/vllm;Hash=${HASH};Subject="";URI=spiffe://cluster.local/ns/apps/sa/chat`;
    assert.deepEqual(parseXfcc(h), [{ by: "spiffe://cluster.local/ns/llm/sa/vllm", hash: HASH, subject: "", uri: ["spiffe://cluster.local/ns/apps/sa/chat"], dns: [] }]);
    assert.deepEqual(parseXfcc(`Hash=${HASH};URI=`)[0]!.uri, [""]);
  });

  it("keys are case-insensitive; values keep their case", () => {
    assert.deepEqual(parseXfcc("uri=spiffe://TD.x/A;dns=Host.Example;by=X")[0], { uri: ["spiffe://TD.x/A"], dns: ["Host.Example"], by: "X" });
  });

  it("quoted values may hold , ; = and escaped quotes; a backslash before anything else stays", () => {
    const [e] = parseXfcc(String.raw`Subject="CN=a\,b;O=\"q\",OU=x\\";URI="spiffe://td/a"`);
    assert.equal(e!.subject, 'CN=a\\,b;O="q",OU=x\\');
    assert.deepEqual(e!.uri, ["spiffe://td/a"]);
  });

  it("whitespace around separators is allowed (Node joins repeated headers with \", \")", () => {
    assert.deepEqual(parseXfcc("URI=spiffe://td/a , URI=spiffe://td/b ;DNS=x").map((e) => [e.uri, e.dns]), [[["spiffe://td/a"], []], [["spiffe://td/b"], ["x"]]]);
  });
});

describe("parseXfcc: defects", () => {
  const cases: Array<[string, string, string]> = [
    ["unterminated quote", 'URI="spiffe://td/a', "unterminated-quote"],
    ["quote inside an unquoted value", 'URI=spiffe://td/a"b', "quote-in-value"],
    ["text after a closing quote", 'Subject="x"y;URI=a', "syntax"],
    ["unknown key", "Foo=bar", "unknown-key"],
    ["key without =", "URI", "missing-equals"],
    ["space before =", "URI =a", "missing-equals"],
    ["empty header", "", "empty-element"],
    ["leading comma", ",URI=a", "empty-element"],
    ["trailing comma", "URI=a,", "empty-element"],
    ["double semicolon", "URI=a;;DNS=b", "empty-element"],
    ["trailing semicolon", "URI=a;", "empty-element"],
    ["duplicate Hash", "Hash=a;Hash=b", "duplicate-key"],
    ["duplicate By (any case)", "By=a;bY=b", "duplicate-key"],
    ["control character in a value", "URI=spiffe://td/a\u0000b", "control-character"],
    ["newline in a quoted value", 'Subject="a\nb"', "control-character"],
    ["DEL in a value", "URI=a\u007f", "control-character"],
    ["a control character where a key should be", "\u0001URI=a", "control-character"],
  ];
  for (const [name, header, check] of cases) {
    it(`${name} → ${check}`, () => throwsCheck(() => parseXfcc(header), check));
  }

  it(`a header over ${XFCC_LIMITS.maxBytes} bytes → too-large`, () => {
    throwsCheck(() => parseXfcc(`URI=${"a".repeat(XFCC_LIMITS.maxBytes)}`), "too-large");
    assert.equal(parseXfcc(`URI=${"a".repeat(XFCC_LIMITS.maxBytes - 4)}`).length, 1);
  });

  it(`more than ${XFCC_LIMITS.maxElements} elements → too-many-elements`, () => {
    assert.equal(parseXfcc(Array(XFCC_LIMITS.maxElements).fill("URI=a").join(",")).length, XFCC_LIMITS.maxElements);
    throwsCheck(() => parseXfcc(Array(XFCC_LIMITS.maxElements + 1).fill("URI=a").join(",")), "too-many-elements");
  });

  it(`more than ${XFCC_LIMITS.maxPairsPerElement} pairs in an element → too-many-pairs`, () => {
    assert.equal(parseXfcc(Array(XFCC_LIMITS.maxPairsPerElement).fill("DNS=a").join(";"))[0]!.dns.length, XFCC_LIMITS.maxPairsPerElement);
    throwsCheck(() => parseXfcc(Array(XFCC_LIMITS.maxPairsPerElement + 1).fill("DNS=a").join(";")), "too-many-pairs");
  });

  it("a non-string is refused as a missing header", () => {
    throwsCheck(() => parseXfcc(undefined as unknown as string), "missing");
    throwsCheck(() => parseXfcc(["URI=a"] as unknown as string), "missing");
  });
});

describe("xfccIdentity: the caller is the LAST element's single spiffe:// URI", () => {
  const sidecar = (uri: string) => `By=spiffe://cluster.local/ns/llm/sa/vllm;Hash=${HASH};Subject="";URI=${uri}`;

  it("reads the caller from the element the sidecar appended", () => {
    const id = xfccIdentity(sidecar("spiffe://cluster.local/ns/apps/sa/chat"));
    assert.deepEqual({ ...id }, { trustDomain: "cluster.local", path: "/ns/apps/sa/chat", uri: "spiffe://cluster.local/ns/apps/sa/chat" });
  });

  it("ignores identities in earlier elements (forwarded hops, or forged by the caller under APPEND_FORWARD)", () => {
    const forged = "By=spiffe://cluster.local/ns/llm/sa/vllm;URI=spiffe://cluster.local/ns/admin/sa/root";
    assert.equal(xfccIdentity(`${forged},${sidecar("spiffe://cluster.local/ns/apps/sa/chat")}`).uri, "spiffe://cluster.local/ns/apps/sa/chat");
  });

  it("a caller's unbalanced quote cannot swallow the sidecar's element: the header is refused", () => {
    throwsCheck(() => xfccIdentity(`URI="spiffe://cluster.local/ns/admin/sa/root,${sidecar("spiffe://cluster.local/ns/apps/sa/chat")}`), "syntax");
  });

  it("accepts a non-spiffe URI beside the single spiffe:// one", () => {
    assert.equal(xfccIdentity("URI=https://example.org/x;URI=spiffe://td/ns/a/sa/b").uri, "spiffe://td/ns/a/sa/b");
  });

  const refusals: Array<[string, string | undefined, string]> = [
    ["no header", undefined, "missing"],
    ["a blank header", "  ", "missing"],
    ["no URI at all", `By=spiffe://td/gw;Hash=${HASH}`, "no-identity"],
    ["Envoy's empty URI= (the caller's certificate has no URI SAN)", `By=spiffe://td/gw;Hash=${HASH};URI=`, "no-identity"],
    ["only non-SPIFFE URIs", "URI=https://example.org/a;DNS=example.org", "no-identity"],
    ["a spiffe:// URI only in an earlier element", "URI=spiffe://td/ns/a/sa/b,URI=", "no-identity"],
    ["several spiffe:// URIs", "URI=spiffe://td/ns/a/sa/b;URI=spiffe://td/ns/a/sa/c", "several-identities"],
    ["an upper-case scheme", "URI=SPIFFE://td/ns/a/sa/b", "invalid-spiffe-id"],
    ["an invalid trust domain", "URI=spiffe://TD/ns/a", "invalid-spiffe-id"],
    ["a trailing slash", "URI=spiffe://td/ns/a/", "invalid-spiffe-id"],
    ["a malformed header", "URI=spiffe://td/a;", "empty-element"],
  ];
  for (const [name, header, check] of refusals) {
    it(`${name} → ${check}`, () => throwsCheck(() => xfccIdentity(header), check));
  }

  it("the refusal says what is wrong", () => {
    assert.throws(() => xfccIdentity("URI=spiffe://td/a;URI=spiffe://td/b"), /xfcc: the last element carries 2 spiffe:\/\/ URIs; a caller must have exactly one identity/);
    assert.throws(() => xfccIdentity("URI=spiffe://td/a/"), /not a valid SPIFFE ID \(spiffeid: path cannot have a trailing slash\)/);
  });
});

describe("trustedPeers", () => {
  const loopback = trustedPeers(["127.0.0.1", "::1"]);

  it("trusts the configured loopback addresses, IPv4-mapped IPv6 included", () => {
    for (const a of ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"]) assert.equal(loopback.has(a), true, a);
  });

  it("trusts nothing else, and never a connection without an address", () => {
    for (const a of ["127.0.0.2", "10.0.0.1", "::2", "::ffff:10.0.0.1", "localhost", "", undefined]) assert.equal(loopback.has(a), false, String(a));
  });

  it("accepts CIDR ranges", () => {
    const pod = trustedPeers(["10.1.0.0/16", "fd00::/8"]);
    assert.equal(pod.has("10.1.200.3"), true);
    assert.equal(pod.has("10.2.0.1"), false);
    assert.equal(pod.has("fd12::1"), true);
  });

  for (const bad of ["localhost", "127.0.0.1/33", "::1/129", "10.0.0.0/", "10.0.0.0/8/8", "", "1.2.3.4 "]) {
    it(`refuses the entry ${JSON.stringify(bad)}`, () => throwsCheck(() => trustedPeers([bad]), "trusted-peer"));
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Property tests. The encoder below is written from Envoy's documented rules, independently of the parser.

interface Pair {
  key: XfccKey;
  value: string;
  quote: boolean;
}

const NEEDS_QUOTES = /[,;="\\]|^[ \t]|[ \t]$/;

function encodeValue(p: Pair): string {
  if (!p.quote && !NEEDS_QUOTES.test(p.value)) return p.value;
  return `"${p.value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function randomCase(key: string, mask: number): string {
  return [...key].map((c, i) => ((mask >> i) & 1 ? c.toLowerCase() : c.toUpperCase())).join("");
}

/** Value characters: everything a value may hold (separators, quotes, backslashes, spaces, latin1), no controls. */
const valueChar = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(",", ";", "=", '"', "\\", " ", "\t", "/", ":", "%") },
  { weight: 8, arbitrary: fc.constantFrom("a", "Z", "0", "-", ".", "_") },
  { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)) },
);
const value = fc.array(valueChar, { maxLength: 24 }).map((cs) => cs.join(""));
const pairArb: fc.Arbitrary<Pair> = fc.record({
  key: fc.constantFrom<XfccKey>("By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS"),
  value,
  quote: fc.boolean(),
});
/** An element: unique single-valued keys, repeated URI/DNS, in any order. */
const elementArb = fc.array(pairArb, { minLength: 1, maxLength: XFCC_LIMITS.maxPairsPerElement }).map((pairs) => {
  const seen = new Set<XfccKey>();
  return pairs.filter((p) => p.key === "URI" || p.key === "DNS" || (!seen.has(p.key) && (seen.add(p.key), true)));
});
const whitespace = fc.constantFrom("", "", "", " ", "\t", "  ");

function expected(pairs: readonly Pair[]): XfccElement {
  const e: XfccElement = { uri: [], dns: [] };
  for (const p of pairs) {
    if (p.key === "URI") e.uri.push(p.value);
    else if (p.key === "DNS") e.dns.push(p.value);
    else e[({ By: "by", Hash: "hash", Cert: "cert", Chain: "chain", Subject: "subject" } as const)[p.key]] = p.value;
  }
  return e;
}

describe("XFCC properties", () => {
  it("round trip: any header encoded by Envoy's rules parses back to the same elements", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(elementArb, fc.array(fc.tuple(fc.nat(7), whitespace, whitespace), { minLength: 32, maxLength: 32 })), { minLength: 1, maxLength: XFCC_LIMITS.maxElements }),
        (elements) => {
          const header = elements
            .map(([pairs, style]) => pairs.map((p, i) => {
              const [mask, before, after] = style[i]!;
              return `${before}${randomCase(p.key, mask)}=${encodeValue(p)}${after}`;
            }).join(";"))
            .join(",");
          fc.pre(header.length <= XFCC_LIMITS.maxBytes);
          assert.deepEqual(parseXfcc(header), elements.map(([pairs]) => expected(pairs)));
        },
      ),
      { numRuns: 500 },
    );
  });

  const hostileToken = fc.oneof(
    fc.constantFrom('"', "\\", '\\"', ",", ";", "=", " ", "\t", "\u0000", "\r\n", "\u007f", "URI=", "uri=", "By=", "DNS=", "Subject=\"", "Hash=", "Foo="),
    fc.constantFrom("spiffe://td/ns/a/sa/b", "spiffe://TD/x", "spiffe://td/", "spiffe://", "https://x", ""),
    fc.string({ maxLength: 6 }),
    fc.string({ unit: "binary", maxLength: 4 }),
  );
  const hostile = fc.array(hostileToken, { maxLength: 60 }).map((t) => t.join(""));

  it("hostile input (quotes, escapes, separators, controls, any Unicode) never throws anything but XfccError", () => {
    fc.assert(
      fc.property(fc.oneof(hostile, fc.string({ unit: "binary", maxLength: 200 })), (header) => {
        onlyXfccErrors(() => parseXfcc(header));
        onlyXfccErrors(() => xfccIdentity(header));
      }),
      { numRuns: 3000 },
    );
  });

  it("huge and repetitive headers are refused by their bounds before they are walked", () => {
    fc.assert(
      fc.property(fc.constantFrom("URI=spiffe://td/a;", "URI=spiffe://td/a,", '"', "a", ",", "\\\"", "URI=\""), fc.integer({ min: 1, max: 40_000 }), (unit, times) => {
        const header = unit.repeat(times);
        if (header.length > XFCC_LIMITS.maxBytes) throwsCheck(() => xfccIdentity(header), "too-large");
        else onlyXfccErrors(() => xfccIdentity(header));
      }),
      { numRuns: 300 },
    );
  });

  it("many spiffe:// URIs in the last element are several identities (or too many pairs), never one of them", () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), (n) => {
        const header = Array.from({ length: n }, (_, i) => `URI=spiffe://td/ns/a/sa/s${i}`).join(";");
        throwsCheck(() => xfccIdentity(header), n > XFCC_LIMITS.maxPairsPerElement ? "too-many-pairs" : "several-identities");
      }),
    );
  });

  it("APPEND_FORWARD: whatever the caller sends, the identity is the sidecar's appended one or the header is refused", () => {
    // What Envoy appends for the connection's peer: Hash, a quoted Subject (RFC 2253, quotes and backslashes escaped), URI, DNS.
    const subject = fc.array(fc.constantFrom("CN=", "O=", "a", ",", "\\,", '\\"', "\\\\", "+", " "), { maxLength: 8 }).map((t) => t.join(""));
    const real = "spiffe://cluster.local/ns/apps/sa/chat";
    fc.assert(
      fc.property(hostile, subject, fc.boolean(), (forged, subj, withDns) => {
        const appended = `By=spiffe://cluster.local/ns/llm/sa/vllm;Hash=${HASH};Subject="${subj}";URI=${real}${withDns ? ";DNS=chat.apps" : ""}`;
        const header = forged === "" ? appended : `${forged},${appended}`;
        try {
          assert.equal(xfccIdentity(header).uri, real);
        } catch (err) {
          if (!(err instanceof XfccError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
