import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { GATEWAY_ERRORS, STREAM_ERRORS } from "../../src/gateway/errors.ts";

const DOC = readFileSync(new URL("../../docs/gateway.md", import.meta.url), "utf8");

/** The rows of the markdown table that starts with `header`. */
function table(header: string): string[][] {
  const lines = DOC.split("\n");
  const start = lines.indexOf(header);
  assert.notEqual(start, -1, `docs/gateway.md has no table "${header}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(line.slice(1, -1).split(" | ").map((c) => c.trim().replace(/^`([^`]*)`$/, "$1")));
  }
  return rows;
}

test("docs/gateway.md's error table is the code's: every code, with its status, type and check, and nothing else", () => {
  const documented = table("| status | code | type | check | when |").map(([status, code, type, check, when]) => ({ code, status: Number(status), type, check, when }));
  const code = Object.entries(GATEWAY_ERRORS).map(([c, s]) => ({ code: c, status: s.status, type: s.type, check: s.check, when: s.when }));
  assert.deepEqual(documented, code);
});

test("docs/gateway.md's stream error table is the code's", () => {
  const documented = table("| code | type | when |").map(([code, type, when]) => ({ code, type, when }));
  assert.deepEqual(documented, Object.entries(STREAM_ERRORS).map(([c, s]) => ({ code: c, type: s.type, when: s.when })));
});
