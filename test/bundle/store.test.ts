import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  BUNDLE_FILE, BundleError, BundleStore, MAX_ARCHIVE_BYTES, readBundleFiles, STATE_FILE, verifyBundle,
} from "../../src/bundle/index.ts";
import type { PersistedState } from "../../src/bundle/index.ts";
import { makeBundle, T0 } from "../support/bundle-factory.ts";

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), "edgeward-bundle-store-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function refusedWith(check: string, message: RegExp) {
  return (err: unknown) => err instanceof BundleError && err.check === check && message.test(err.message);
}

function assertError(error: BundleError | null, check: string, message: RegExp): void {
  assert.ok(error instanceof BundleError, "an error is reported");
  assert.equal(error.check, check);
  assert.match(error.message, message);
}

const STATE: PersistedState = { minRevision: 7, activeDigest: "ab".repeat(32), highWaterMs: T0 + 5000, tampered: false };

/** A store holding a real signed bundle (revision 7) and the state that names it. */
async function storedBundle(t: { after: (fn: () => void) => void }) {
  const dir = join(tempDir(t), "state");
  const bundle = await makeBundle({ revision: 7 });
  const verified = await verifyBundle(bundle.files, { keys: bundle.trusted, nowMs: T0 });
  const state: PersistedState = { minRevision: 7, activeDigest: verified.digest, highWaterMs: T0, tampered: false };
  await new BundleStore(dir).saveBundle(bundle.files, state);
  return { dir, bundle, state, statePath: join(dir, STATE_FILE), bundlePath: join(dir, BUNDLE_FILE) };
}

describe("BundleStore", () => {
  test("load creates a missing directory 0700 and finds nothing in it", async (t) => {
    const dir = join(tempDir(t), "nested", "state");
    assert.deepEqual(await new BundleStore(dir).load(), { state: null, files: null, error: null });
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a saved bundle and its state load back as they were: files 0600, no temporary file left", async (t) => {
    const { dir, bundle, state, statePath, bundlePath } = await storedBundle(t);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(dir).sort(), [BUNDLE_FILE, STATE_FILE]);
    assert.equal(statSync(statePath).mode & 0o777, 0o600);
    assert.equal(statSync(bundlePath).mode & 0o777, 0o600);

    const loaded = await new BundleStore(dir).load();
    assert.equal(loaded.error, null);
    assert.deepEqual(loaded.state, state);
    assert.deepEqual(new Map([...loaded.files!].map(([p, b]) => [p, Buffer.from(b)])), new Map([...bundle.files].map(([p, b]) => [p, Buffer.from(b)])));
  });

  test("the stored bundle is a plain bundle archive, signature included, that verifies as it is", async (t) => {
    const { bundle, bundlePath } = await storedBundle(t);
    const files = await readBundleFiles(bundlePath);
    assert.deepEqual([...files.keys()].sort(), ["manifest.json", "manifest.json.sig", "policy.yaml"]);
    const verified = await verifyBundle(files, { keys: bundle.trusted, nowMs: T0 });
    assert.equal(verified.manifest.revision, 7);
  });

  test("state.json is a small versioned JSON document", async (t) => {
    const dir = tempDir(t);
    await new BundleStore(dir).saveState(STATE);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, STATE_FILE), "utf8")), { version: 1, ...STATE });
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
  });

  test("a state saved before any bundle loads without an error", async (t) => {
    const dir = tempDir(t);
    const state: PersistedState = { minRevision: 0, activeDigest: null, highWaterMs: T0, tampered: true };
    await new BundleStore(dir).saveState(state);
    assert.deepEqual(await new BundleStore(dir).load(), { state, files: null, error: null });
  });

  test("saveState replaces the state and leaves the stored bundle alone", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    const before = readFileSync(bundlePath);
    const raised = { ...state, highWaterMs: state.highWaterMs + 60_000, tampered: true };
    await new BundleStore(dir).saveState(raised);
    assert.deepEqual(readFileSync(bundlePath), before);
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, raised);
    assert.ok(loaded.files !== null);
  });

  test("saves made at once are applied one after another, in call order", async (t) => {
    const dir = tempDir(t);
    const store = new BundleStore(dir);
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.saveState({ ...STATE, highWaterMs: T0 + i })));
    assert.equal((await store.load()).state?.highWaterMs, T0 + 7);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
  });

  test("a temporary file left by a crash is overwritten, and made 0600", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, `${STATE_FILE}.tmp`), "half a state", { mode: 0o644 });
    await new BundleStore(dir).saveState(STATE);
    assert.deepEqual(readdirSync(dir), [STATE_FILE]);
    assert.equal(statSync(join(dir, STATE_FILE)).mode & 0o777, 0o600);
    assert.deepEqual((await new BundleStore(dir).load()).state, STATE);
  });

  test("a symbolic link planted at the temporary path is not followed", async (t) => {
    const dir = tempDir(t);
    const stateDir = join(dir, "state");
    mkdirSync(stateDir, { mode: 0o700 });
    const target = join(dir, "elsewhere");
    writeFileSync(target, "untouched");
    symlinkSync(target, join(stateDir, `${STATE_FILE}.tmp`));
    await assert.rejects(new BundleStore(stateDir).saveState(STATE), refusedWith("store", /cannot write .*state\.json: is a symbolic link/));
    assert.equal(readFileSync(target, "utf8"), "untouched");
    assert.deepEqual(readdirSync(stateDir), []);
  });
});

describe("BundleStore.load with damaged files", () => {
  test("a truncated bundle is refused; the state (the rollback floor) is still returned", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    truncateSync(bundlePath, Math.floor(statSync(bundlePath).size / 2));
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, state);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "malformed-archive", /^bundle: .*bundle\.tar\.gz: corrupt gzip data/);
  });

  test("a bundle file of garbage is refused", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    writeFileSync(bundlePath, "this is not a tarball\n");
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, state);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "malformed-archive", /bundle\.tar\.gz: not a gzip-compressed tar archive/);
  });

  test("an empty bundle file is refused", async (t) => {
    const { dir, bundlePath } = await storedBundle(t);
    writeFileSync(bundlePath, "");
    assertError((await new BundleStore(dir).load()).error, "malformed-archive", /not a gzip-compressed tar archive/);
  });

  test("a deleted bundle keeps the state and says the floor stays", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    unlinkSync(bundlePath);
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, state);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "store", /bundle\.tar\.gz is missing; revision 7 stays the floor/);
  });

  test("a bundle without state.json is refused: it could be a planted old revision", async (t) => {
    const { dir, statePath } = await storedBundle(t);
    unlinkSync(statePath);
    const loaded = await new BundleStore(dir).load();
    assert.equal(loaded.state, null);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "store", /state\.json is missing, so the stored bundle cannot be checked for rollback/);
  });

  test("a bundle beside a state that names no activated bundle is refused; the state is kept", async (t) => {
    const { dir, statePath } = await storedBundle(t);
    unlinkSync(statePath);
    const rewritten: PersistedState = { minRevision: 0, activeDigest: null, highWaterMs: T0 + 1000, tampered: false };
    await new BundleStore(dir).saveState(rewritten);
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, rewritten);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "store", /state\.json names no activated bundle, so the stored bundle cannot be checked for rollback/);
  });

  const damagedStates: [string, string | Buffer, RegExp][] = [
    ["garbage", "\u0000\u0001garbage", /state\.json is not UTF-8 JSON/],
    ["truncated", JSON.stringify({ version: 1, ...STATE }).slice(0, 30), /state\.json is not UTF-8 JSON/],
    ["empty", "", /state\.json is not UTF-8 JSON/],
    ["not UTF-8", Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /state\.json is not UTF-8 JSON/],
    ["an array", "[]", /state\.json: /],
    ["of another version", JSON.stringify({ ...STATE, version: 2 }), /state\.json: version: /],
    ["with an unknown key", JSON.stringify({ version: 1, ...STATE, extra: 1 }), /state\.json: .*extra/],
    ["with a negative revision", JSON.stringify({ version: 1, ...STATE, minRevision: -1 }), /state\.json: minRevision: /],
    ["with a fractional mark", JSON.stringify({ version: 1, ...STATE, highWaterMs: 1.5 }), /state\.json: highWaterMs: /],
    ["with an uppercase digest", JSON.stringify({ version: 1, ...STATE, activeDigest: "AB".repeat(32) }), /activeDigest: must be a lowercase sha256 hex digest/],
    ["with a revision but no digest", JSON.stringify({ version: 1, ...STATE, activeDigest: null }), /minRevision and activeDigest must be set together/],
    ["with a string for tampered", JSON.stringify({ version: 1, ...STATE, tampered: "no" }), /state\.json: tampered: /],
    ["oversized", " ".repeat(5000), /state\.json is 5000 bytes, more than the 4096 allowed/],
  ];
  for (const [what, content, message] of damagedStates) {
    test(`a state.json that is ${what} refuses the state and the bundle`, async (t) => {
      const { dir, statePath } = await storedBundle(t);
      writeFileSync(statePath, content);
      const loaded = await new BundleStore(dir).load();
      assert.equal(loaded.state, null);
      assert.equal(loaded.files, null);
      assertError(loaded.error, "store", message);
    });
  }

  test("a symbolic link in place of state.json is refused, not followed", async (t) => {
    const { dir, statePath } = await storedBundle(t);
    const elsewhere = join(dir, "..", "elsewhere.json");
    writeFileSync(elsewhere, JSON.stringify({ version: 1, ...STATE }));
    unlinkSync(statePath);
    symlinkSync(elsewhere, statePath);
    assertError((await new BundleStore(dir).load()).error, "store", /cannot read .*state\.json: is a symbolic link/);
  });

  test("a directory in place of the bundle is refused; the state is still returned", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    unlinkSync(bundlePath);
    mkdirSync(bundlePath);
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, state);
    assert.equal(loaded.files, null);
    assertError(loaded.error, "store", /bundle\.tar\.gz is not a regular file/);
  });

  test("an oversized bundle file is refused before it is read", async (t) => {
    const { dir, state, bundlePath } = await storedBundle(t);
    truncateSync(bundlePath, MAX_ARCHIVE_BYTES + 1);
    const loaded = await new BundleStore(dir).load();
    assert.deepEqual(loaded.state, state);
    assertError(loaded.error, "store", new RegExp(`bundle\\.tar\\.gz is ${MAX_ARCHIVE_BYTES + 1} bytes, more than the ${MAX_ARCHIVE_BYTES} allowed`));
  });
});

describe("BundleStore directory", () => {
  test("a directory open to other users is refused, for loads and saves", async (t) => {
    const dir = tempDir(t);
    chmodSync(dir, 0o755);
    await assert.rejects(new BundleStore(dir).load(), refusedWith("store", /is open to other users \(mode 755\); chmod 700 it/));
    await assert.rejects(new BundleStore(dir).saveState(STATE), refusedWith("store", /chmod 700 it/));
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a file in place of the directory is refused", async (t) => {
    const path = join(tempDir(t), "state");
    writeFileSync(path, "");
    await assert.rejects(new BundleStore(path).load(), refusedWith("store", /cannot use .* as the bundle state directory: a path component is not a directory/));
  });

  test("a failed save does not stop later saves", async (t) => {
    const dir = tempDir(t);
    const store = new BundleStore(dir);
    chmodSync(dir, 0o755);
    await assert.rejects(store.saveState(STATE), refusedWith("store", /chmod 700/));
    chmodSync(dir, 0o700);
    await store.saveState(STATE);
    assert.deepEqual((await store.load()).state, STATE);
  });
});
