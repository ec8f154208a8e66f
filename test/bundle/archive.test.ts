import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { Header, Pax, type HeaderData } from "tar";
import { BundleError, MAX_ENTRIES, packArchive, unpackArchive, type BundleFiles } from "../../src/bundle/index.ts";
import { makeBundle } from "../support/bundle-factory.ts";

const MiB = 1024 * 1024;

/** One raw tar entry, encoded by node-tar's Header: hostile archives are built the way a real tool would write them. */
function entry(data: HeaderData, body: Uint8Array = new Uint8Array(0)): Buffer {
  const header = new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), size: body.length, type: "File", ...data });
  header.encode();
  return Buffer.concat([header.block!, body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

function file(path: string, text = "x"): Buffer {
  return entry({ path }, Buffer.from(text));
}

const END = Buffer.alloc(1024);

function tarGz(...parts: Buffer[]): Buffer {
  return gzipSync(Buffer.concat([...parts, END]));
}

function refused(bytes: Uint8Array, message: RegExp): void {
  assert.throws(() => unpackArchive(bytes), (error: unknown) => {
    assert.ok(error instanceof BundleError, String(error));
    assert.equal(error.check, "malformed-archive");
    assert.match(error.message, message);
    return true;
  });
}

function text(files: BundleFiles): Record<string, string> {
  return Object.fromEntries([...files].map(([path, bytes]) => [path, Buffer.from(bytes).toString("utf8")]));
}

describe("packArchive", () => {
  test("writes a reproducible tar.gz: sorted paths, mode 0644, uid/gid 0, no names, the given mtime", () => {
    const files = new Map([
      ["z.yaml", Buffer.from("z")],
      ["a/b.yml", Buffer.from("b")],
      ["a.yaml", Buffer.from("a")],
    ]);
    const archive = packArchive(files, 1_795_392_000);
    assert.deepEqual(packArchive(new Map([...files].reverse()), 1_795_392_000), archive);
    assert.equal(archive[9], 255, "gzip OS byte: unknown");
    assert.deepEqual(archive.subarray(4, 8), Buffer.alloc(4), "gzip header without a timestamp");
    const tar = gunzipSync(archive);
    const headers: Header[] = [];
    for (let off = 0; off < tar.length; off += 512) {
      const h = new Header(tar, off);
      if (h.nullBlock) break;
      headers.push(h);
      off += Math.ceil((h.size ?? 0) / 512) * 512;
    }
    assert.deepEqual(
      headers.map((h) => [h.path, h.type, h.mode, h.uid, h.gid, h.uname, h.gname, h.mtime?.toISOString(), h.cksumValid]),
      ["a.yaml", "a/b.yml", "z.yaml"].map((p) => [p, "File", 0o644, 0, 0, "", "", "2026-11-23T00:00:00.000Z", true]),
    );
    assert.deepEqual(text(unpackArchive(archive)), { "a.yaml": "a", "a/b.yml": "b", "z.yaml": "z" });
  });

  test("carries a path too long for the ustar fields, and a time past 2242, in a pax record", () => {
    const long = `${"d".repeat(120)}/${"f".repeat(120)}.yaml`;
    const files = new Map([[long, Buffer.from("long")]]);
    assert.deepEqual(text(unpackArchive(packArchive(files, 9_000_000_000))), { [long]: "long" });
  });

  test("refuses what a reader would refuse", () => {
    const cases: [Map<string, Uint8Array>, RegExp][] = [
      [new Map([["../x.yaml", Buffer.from("")]]), /bundle path "..\/x.yaml" has a ".." segment/],
      [new Map([["A.yaml", Buffer.from("")], ["a.yaml", Buffer.from("")]]), /bundle holds "A.yaml" and "a.yaml", which differ only in case/],
      [new Map([["a", Buffer.from("")], ["a/b.yaml", Buffer.from("")]]), /bundle holds "a" both as a file and as a directory/],
      [new Map([["big.yaml", Buffer.alloc(8 * MiB + 1)]]), /"big.yaml" is larger than 8 MiB/],
      [new Map(), /^bundle: a bundle holds at least one file$/],
    ];
    for (const [files, message] of cases) {
      assert.throws(() => packArchive(files, 0), (e: unknown) => e instanceof BundleError && e.check === "malformed-archive" && message.test(e.message));
    }
  });
});

describe("unpackArchive", () => {
  test("reads a built bundle in memory", async () => {
    const { archive, files } = await makeBundle();
    assert.deepEqual(unpackArchive(archive), files);
  });

  test("skips directory entries and accepts files up to the size limit", () => {
    const exact = Buffer.alloc(8 * MiB, 7);
    const files = unpackArchive(tarGz(entry({ path: "dir/", type: "Directory", mode: 0o755 }), entry({ path: "dir/p.yaml" }, exact)));
    assert.deepEqual([...files.keys()], ["dir/p.yaml"]);
    assert.equal(files.get("dir/p.yaml")!.length, 8 * MiB);
  });

  const hostile: [string, () => Uint8Array, RegExp][] = [
    ["not gzip at all", () => Buffer.from("manifest.json"), /^bundle: not a gzip-compressed tar archive$/],
    ["an empty input", () => new Uint8Array(0), /^bundle: not a gzip-compressed tar archive$/],
    ["a plain (uncompressed) tar", () => Buffer.concat([file("p.yaml"), END]), /not a gzip-compressed tar archive/],
    ["truncated gzip", () => tarGz(file("p.yaml")).subarray(0, 40), /^bundle: corrupt gzip data \(unexpected end of file\)$/],
    ["gzip with a flipped byte", () => { const b = Buffer.from(tarGz(file("p.yaml", "y".repeat(600)))); b[b.length - 6]! ^= 0xff; return b; }, /^bundle: corrupt gzip data/],
    ["gzip with trailing garbage", () => Buffer.concat([tarGz(file("p.yaml")), Buffer.from("garbage")]), /^bundle: corrupt gzip data/],
    ["a gzip bomb", () => gzipSync(Buffer.alloc(40 * MiB)), /^bundle: the archive inflates to more than 32 MiB$/],
    ["gzip of something that is not tar", () => gzipSync(Buffer.from("hello, world")), /not a whole number of 512-byte blocks/],
    ["gzip of random blocks", () => gzipSync(Buffer.alloc(1024, 0x41)), /^bundle: not a valid tar archive \(TAR_ENTRY_INVALID: checksum failure\)$/],
    ["an archive with no entries", () => gzipSync(END), /^bundle: not a valid tar archive \(TAR_BAD_ARCHIVE: Unrecognized archive format\)$/],
    ["a tar without its end blocks", () => gzipSync(file("p.yaml")), /ends without its end-of-archive blocks/],
    ["a tar cut inside an entry", () => gzipSync(entry({ path: "p.yaml" }, Buffer.alloc(2048)).subarray(0, 1024)), /^bundle: not a valid tar archive \(TAR_BAD_ARCHIVE: Truncated input/],
    ["a tar.gz inside the gzip", () => gzipSync(Buffer.concat([tarGz(file("p.yaml")), Buffer.alloc(512 - (tarGz(file("p.yaml")).length % 512))])), /^bundle: the archive is compressed twice$/],
    ["path traversal", () => tarGz(file("../x.yaml")), /^bundle: archive path "..\/x.yaml" has a ".." segment$/],
    ["path traversal inside a path", () => tarGz(file("a/../../x.yaml")), /has a ".." segment/],
    ["a pax record renaming an entry to a traversing path", () => tarGz(new Pax({ path: "../../etc/cron.d/x" }).encode(), file("ok.yaml")), /^bundle: archive path "..\/..\/etc\/cron.d\/x" has a ".." segment$/],
    ["a GNU long-name record with a traversing path", () => tarGz(entry({ path: "././@LongLink", type: "NextFileHasLongPath" }, Buffer.from(`${"../".repeat(40)}x.yaml\0`)), file("ok.yaml")), /has a ".." segment/],
    ["an absolute path", () => tarGz(file("/etc/cron.d/x")), /^bundle: archive path "\/etc\/cron.d\/x" is absolute$/],
    ["a path with an empty segment", () => tarGz(file("a//b.yaml")), /has an empty segment/],
    ["a path with a control character", () => tarGz(file("a\u001b[2J.yaml")), /^bundle: archive path "a\\u001b\[2J.yaml" has a character outside/],
    ["a traversing directory entry", () => tarGz(entry({ path: "../d/", type: "Directory" })), /has a ".." segment/],
    ["a symbolic link", () => tarGz(entry({ path: "p.yaml", type: "SymbolicLink", linkpath: "/etc/passwd" })), /^bundle: archive entry "p.yaml" is a symbolic link; only regular files are allowed$/],
    ["a hard link", () => tarGz(file("a.yaml"), entry({ path: "b.yaml", type: "Link", linkpath: "a.yaml" })), /"b.yaml" is a hard link/],
    ["a character device", () => tarGz(entry({ path: "tty", type: "CharacterDevice" })), /"tty" is a character device/],
    ["a FIFO", () => tarGz(entry({ path: "fifo", type: "FIFO" })), /"fifo" is a FIFO/],
    ["a duplicate entry", () => tarGz(file("p.yaml", "first"), file("p.yaml", "second")), /^bundle: archive holds "p.yaml" twice$/],
    ["paths that differ only in case", () => tarGz(file("P.yaml"), file("p.yaml")), /which differ only in case/],
    ["a file that is also a directory", () => tarGz(file("p"), file("p/q.yaml")), /holds "p" both as a file and as a directory/],
    ["too many entries", () => tarGz(...Array.from({ length: MAX_ENTRIES + 1 }, (_, i) => file(`f${i}.yaml`))), /^bundle: archive has more than 1000 entries$/],
    ["too many directory entries", () => tarGz(...Array.from({ length: MAX_ENTRIES + 1 }, (_, i) => entry({ path: `d${i}/`, type: "Directory" }))), /more than 1000 entries/],
    ["a file over the size limit", () => tarGz(entry({ path: "big.yaml" }, Buffer.alloc(8 * MiB + 1))), /^bundle: "big.yaml" is larger than 8 MiB$/],
    ["a header claiming a huge file", () => gzipSync(Buffer.concat([entry({ path: "big.yaml", size: 2 ** 33 }), END])), /"big.yaml" is larger than 8 MiB/],
    ["an unsupported entry type", () => tarGz(entry({ path: "v", type: "TapeVolumeHeader" })), /^bundle: archive entry "v" has an unsupported type \(V\)$/],
  ];
  for (const [name, make, message] of hostile) {
    test(`refuses ${name}`, () => refused(make(), message));
  }

  test("the gzip-bomb check stops inflating at the limit instead of inflating it all", () => {
    const bomb = gzipSync(Buffer.alloc(128 * MiB));
    const before = process.memoryUsage().arrayBuffers;
    refused(bomb, /inflates to more than 32 MiB/);
    assert.ok(process.memoryUsage().arrayBuffers - before < 64 * MiB);
  });
});

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,60}$/).filter((s) => s !== "." && s !== "..");
const path = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join("/")).filter((p) => p.length <= 255);

/** Distinct paths that a directory could hold: none equal by case, none a directory of another. */
const fileMap = fc.uniqueArray(path, { minLength: 1, maxLength: 12, selector: (p) => p.toLowerCase() })
  .map((paths) => paths.filter((p) => !paths.some((q) => q.toLowerCase().startsWith(`${p.toLowerCase()}/`))))
  .chain((paths) => fc.tuple(...paths.map((p) => fc.uint8Array({ maxLength: 1500 }).map((b): [string, Uint8Array] => [p, b]))))
  .map((entries) => new Map(entries));

function onlyBundleErrors(bytes: Uint8Array): void {
  try {
    unpackArchive(bytes);
  } catch (error) {
    if (!(error instanceof BundleError)) throw error;
  }
}

describe("archive properties", () => {
  test("unpackArchive(packArchive(files)) gives the files back", () => {
    fc.assert(
      fc.property(fileMap, fc.integer({ min: 0, max: 253_402_300_799 }), (files, mtime) => {
        const back = unpackArchive(packArchive(files, mtime));
        assert.deepEqual(new Map([...back].map(([p, b]) => [p, Buffer.from(b)])), new Map([...files].map(([p, b]) => [p, Buffer.from(b)])));
      }),
      { numRuns: 150 },
    );
  });

  test("arbitrary bytes either unpack or throw a BundleError", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), onlyBundleErrors), { numRuns: 300 });
    const gzipped = fc.uint8Array({ maxLength: 4096 }).map((b) => gzipSync(b));
    fc.assert(fc.property(gzipped, onlyBundleErrors), { numRuns: 300 });
  });

  test("mutated archives and mutated tar streams either unpack or throw a BundleError", async () => {
    const { archive } = await makeBundle({ policy: { "a.yaml": "a: 1\n", "nested/b.yml": "b: 2\n".repeat(200) } });
    const tar = gunzipSync(archive);
    const mutation = fc.record({
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
    });
    const mutate = (source: Buffer, m: { at: number; value: number; cut: number | undefined }): Buffer => {
      const copy = Buffer.from(source);
      copy[m.at % copy.length] = m.value;
      return m.cut === undefined ? copy : copy.subarray(0, m.cut % copy.length);
    };
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => onlyBundleErrors(ms.reduce(mutate, archive))), { numRuns: 300 });
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => onlyBundleErrors(gzipSync(ms.reduce(mutate, tar)))), { numRuns: 300 });
  });
});
