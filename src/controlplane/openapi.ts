/** The control plane's HTTP API as an OpenAPI 3.1 document, served at GET /v1/openapi.json. */

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ "application/json": { schema } });
const error = (description: string) => ({ description, content: json(ref("Error")) });
const timestamp = { type: "string", format: "date-time", description: "RFC 3339 UTC with milliseconds" };
const hash = { type: "string", pattern: "^[0-9a-f]{64}$" };

const NODE = [{ nodeSvid: [] }];
const OPERATOR = [{ operatorSvid: [] }, { operatorToken: [] }];
const ANY = [...NODE, ...OPERATOR];
const denied = { "401": error("not authenticated: no or an invalid client certificate, or a wrong bearer token"), "403": error("authenticated, but not allowed: not in a node group, not an operator, or revoked") };

const nodeHeaders = [
  { name: "x-edgeward-bundle-revision", in: "header", required: false, schema: { type: "integer", minimum: 0 }, description: "the bundle revision the node claims to enforce (kept as its claim; one never published to its group raises claim-unpublished-revision)" },
  { name: "x-edgeward-stage", in: "header", required: false, schema: { enum: ["fresh", "grace", "restricted", "locked"] }, description: "the degradation stage the node claims to be in (kept as its claim)" },
  { name: "x-edgeward-log-seq", in: "header", required: false, schema: { type: "integer", minimum: 0 }, description: "the last seq the node claims its decision log holds (kept as its claim; one behind the acknowledged head raises claim-log-behind)" },
];
const groupQuery = { name: "group", in: "query", required: true, schema: { type: "string" }, description: "a configured node group" };
const limitQuery = { name: "limit", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 } };

export const OPENAPI_DOCUMENT = {
  openapi: "3.1.0",
  info: {
    title: "Edgeward control plane",
    version: "1",
    description: "Signed bundle distribution, decision-log upload, retroactive findings, revocation and the fleet view. " +
      "Edge nodes authenticate with their X.509-SVID; operators with an SVID listed in operators.principals or the bearer token.",
  },
  components: {
    securitySchemes: {
      nodeSvid: { type: "mutualTLS", description: "the node's X.509-SVID; its SPIFFE ID must match a configured group" },
      operatorSvid: { type: "mutualTLS", description: "an X.509-SVID whose SPIFFE ID matches operators.principals" },
      operatorToken: { type: "http", scheme: "bearer", description: "the content of operators.tokenFile" },
    },
    schemas: {
      Error: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["code", "message"],
            properties: { code: { type: "string" }, message: { type: "string" }, seq: { type: "integer" } },
          },
          ackSeq: { type: "integer" },
          ackHash: hash,
        },
      },
      LogHead: { type: "object", required: ["ackSeq", "ackHash"], properties: { ackSeq: { type: "integer", minimum: 0 }, ackHash: hash } },
      UploadResult: {
        type: "object",
        required: ["ackSeq", "ackHash", "accepted", "duplicates"],
        properties: { ackSeq: { type: "integer" }, ackHash: hash, accepted: { type: "integer" }, duplicates: { type: "integer" } },
      },
      Published: {
        type: "object",
        required: ["group", "revision", "digest", "etag"],
        properties: { group: { type: "string" }, revision: { type: "integer" }, digest: hash, etag: hash },
      },
      BundleHistoryEntry: {
        type: "object",
        required: ["revision", "digest", "name", "createdAt", "notAfter", "publishedAt"],
        properties: { revision: { type: "integer" }, digest: hash, name: { type: "string" }, createdAt: timestamp, notAfter: timestamp, publishedAt: timestamp },
      },
      RevocationRequest: {
        type: "object",
        required: ["reason"],
        additionalProperties: false,
        properties: {
          spiffeId: { type: "string", description: "a SPIFFE ID; give this or serial" },
          serial: { type: "string", description: "a certificate serial in hex, optionally colon-separated octets" },
          reason: { type: "string", maxLength: 1024 },
        },
      },
      Revocation: {
        type: "object",
        required: ["id", "kind", "value", "reason", "revokedAt"],
        properties: { id: { type: "integer" }, kind: { enum: ["spiffe-id", "serial"] }, value: { type: "string" }, reason: { type: "string" }, revokedAt: timestamp },
      },
      RevocationResult: {
        type: "object",
        required: ["revocation", "bundles"],
        properties: {
          revocation: ref("Revocation"),
          bundles: { type: "array", items: { type: "object", required: ["group", "revision"], properties: { group: { type: "string" }, revision: { type: "integer" } } } },
        },
      },
      Node: {
        type: "object",
        required: ["id", "group", "firstSeen", "lastContact", "claimed", "ackSeq", "findings"],
        properties: {
          id: { type: "string", description: "the node's SPIFFE ID, from its verified SVID" },
          group: { type: "string" },
          firstSeen: timestamp,
          lastContact: timestamp,
          claimed: {
            type: "object",
            description: "what the node claims in the x-edgeward-* headers of its calls (as of its latest call that sent each): its claims, not verified; contradictions with what the control plane knows are findings (claim-*)",
            required: ["bundleRevision", "stage", "logSeq"],
            properties: {
              bundleRevision: { type: ["integer", "null"] },
              stage: { type: ["string", "null"], enum: ["fresh", "grace", "restricted", "locked", null] },
              logSeq: { type: ["integer", "null"] },
            },
          },
          ackSeq: { type: "integer", description: "the last record of the node's log that the control plane holds and acknowledged" },
          findings: { type: "integer", description: "findings on the node (counted up to 1000)" },
        },
      },
      Finding: {
        type: "object",
        required: ["id", "node", "kind", "severity", "seqFrom", "seqTo", "explanation", "createdAt"],
        properties: {
          id: { type: "integer" },
          node: { type: "string" },
          kind: {
            enum: [
              "revoked-caller-allowed", "superseded-bundle", "degraded-stage", "clock-rewind", "upload-gap", "upload-fork", "upload-chain", "upload-tampered",
              "upload-foreign-chain", "claim-unpublished-revision", "claim-log-behind",
            ],
          },
          severity: { enum: ["low", "medium", "high", "critical"] },
          seqFrom: { type: ["integer", "null"] },
          seqTo: { type: ["integer", "null"] },
          explanation: { type: "string" },
          createdAt: timestamp,
        },
      },
    },
  },
  paths: {
    "/healthz": {
      get: { operationId: "health", summary: "Liveness; the only route served without authentication", security: [], responses: { "200": { description: "serving", content: json({ type: "object" }) } } },
    },
    "/v1/openapi.json": {
      get: { operationId: "openapi", summary: "This document", security: ANY, responses: { "200": { description: "OpenAPI 3.1", content: json({ type: "object" }) }, ...denied } },
    },
    "/v1/bundle": {
      get: {
        operationId: "getBundle",
        summary: "The newest bundle of the caller's group, with ETag and long-poll",
        security: NODE,
        parameters: [
          ...nodeHeaders,
          { name: "If-None-Match", in: "header", required: false, schema: { type: "string" } },
          { name: "Prefer", in: "header", required: false, schema: { type: "string", pattern: "wait=\\d+" }, description: "wait=N (at most 300): hold the answer until a newer bundle is published or N seconds pass" },
        ],
        responses: {
          "200": { description: "the bundle archive exactly as pushed", headers: { ETag: { schema: { type: "string" } }, "Preference-Applied": { schema: { type: "string" } } }, content: { "application/gzip": { schema: { type: "string", contentMediaType: "application/gzip" } } } },
          "304": { description: "the bundle named by If-None-Match is still the newest" },
          "404": error("no_bundle: the group has no bundle yet"),
          ...denied,
        },
      },
    },
    "/v1/logs/head": {
      get: { operationId: "getLogHead", summary: "The caller's acknowledged log head", security: NODE, parameters: nodeHeaders, responses: { "200": { description: "the head (0 and the genesis hash before the first upload)", content: json(ref("LogHead")) }, ...denied } },
    },
    "/v1/logs": {
      post: {
        operationId: "uploadLog",
        summary: "Upload decision-log lines (gzip NDJSON), idempotently",
        security: NODE,
        parameters: [...nodeHeaders, { name: "Content-Encoding", in: "header", required: true, schema: { const: "gzip" } }],
        requestBody: { required: true, content: { "application/x-ndjson": { schema: { type: "string", description: "the log's lines exactly as in the node's file, each ending with a newline; at most 10,000 lines, 8 MiB compressed, 32 MiB inflated" } } } },
        responses: {
          "200": { description: "stored (or all duplicates); the head moved", content: json(ref("UploadResult")) },
          "400": error("bad_gzip: the body is not gzip data"),
          "409": error("gap, fork, chain, tampered, foreign-chain — records stored under another node (nothing stored, a finding raised) — or conflict (another upload moved the head; retry)"),
          "413": error("too_large (compressed or inflated) or too_many_lines"),
          "415": error("unsupported_media_type: not application/x-ndjson with Content-Encoding gzip"),
          ...denied,
        },
      },
    },
    "/v1/bundles": {
      post: {
        operationId: "pushBundle",
        summary: "Publish a signed bundle for a group",
        security: OPERATOR,
        parameters: [groupQuery],
        requestBody: { required: true, content: { "application/gzip": { schema: { type: "string", contentMediaType: "application/gzip" } } } },
        responses: {
          "201": { description: "published; the group's long-polls are woken", content: json(ref("Published")) },
          "400": error("a bundle check (malformed-archive, bad-signature, unknown-key, expired, …), policy, bad_request or unknown_group"),
          "409": error("rollback or revision-reused"),
          "413": error("too_large: more than 32 MiB"),
          "415": error("unsupported_media_type"),
          ...denied,
        },
      },
      get: {
        operationId: "listBundles",
        summary: "A group's bundle history, newest first",
        security: OPERATOR,
        parameters: [groupQuery, limitQuery],
        responses: { "200": { description: "history", content: json({ type: "array", items: ref("BundleHistoryEntry") }) }, "400": error("bad_request or unknown_group"), ...denied },
      },
    },
    "/v1/revocations": {
      post: {
        operationId: "revoke",
        summary: "Revoke a SPIFFE ID or a certificate serial; publishes a new revision of every group's bundle when a release key is configured",
        security: OPERATOR,
        requestBody: { required: true, content: json(ref("RevocationRequest")) },
        responses: { "201": { description: "recorded", content: json(ref("RevocationResult")) }, "400": error("bad_request"), ...denied },
      },
      get: {
        operationId: "listRevocations",
        summary: "Every revocation, oldest first",
        security: OPERATOR,
        responses: { "200": { description: "revocations", content: json({ type: "array", items: ref("Revocation") }) }, ...denied },
      },
    },
    "/v1/nodes": {
      get: { operationId: "listNodes", summary: "Every node that has called, by id", security: OPERATOR, responses: { "200": { description: "nodes", content: json({ type: "array", items: ref("Node") }) }, ...denied } },
    },
    "/v1/nodes/{id}": {
      get: {
        operationId: "getNode",
        summary: "One node",
        security: OPERATOR,
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" }, description: "the node's SPIFFE ID, URL-encoded" }],
        responses: { "200": { description: "the node", content: json(ref("Node")) }, "404": error("not_found"), ...denied },
      },
    },
    "/v1/findings": {
      get: {
        operationId: "listFindings",
        summary: "Findings, newest first",
        security: OPERATOR,
        parameters: [
          { name: "node", in: "query", required: false, schema: { type: "string" } },
          { name: "severity", in: "query", required: false, schema: { enum: ["low", "medium", "high", "critical"] } },
          { name: "kind", in: "query", required: false, schema: { type: "string" } },
          limitQuery,
        ],
        responses: { "200": { description: "findings", content: json({ type: "array", items: ref("Finding") }) }, "400": error("bad_request"), ...denied },
      },
    },
  },
} as const;
