import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { Header, type HeaderData } from "tar";
import {
  checkLayout,
  DEFAULT_READ_LIMITS,
  descriptor,
  digestHex,
  encodeJson,
  imageIndex,
  imageManifest,
  MEDIA_TYPE,
  readLayoutBytes,
  ReleaseError,
  type ReadLimits,
  type ReleaseCheck,
} from "../../src/release/index.ts";
import { archiveOf, assemble, makeRelease } from "../support/release-factory.ts";

/** One raw tar entry, encoded by node-tar's Header: hostile archives are built the way a real tool would write them. */
function entry(data: HeaderData, body: Uint8Array = new Uint8Array(0)): Buffer {
  const header = new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), size: body.length, type: "File", ...data });
  header.encode();
  return Buffer.concat([header.block!, body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
}

const END = Buffer.alloc(1024);
const LAYOUT = entry({ path: "oci-layout" }, Buffer.from('{"imageLayoutVersion":"1.0.0"}'));

async function refused(bytes: Buffer, check: ReleaseCheck, message: RegExp, limits?: ReadLimits): Promise<void> {
  await assert.rejects(async () => checkLayout(await readLayoutBytes(bytes, limits)), (error: unknown) => {
    assert.ok(error instanceof ReleaseError, String(error));
    assert.equal(error.check, check, error.message);
    assert.match(error.message, message);
    return true;
  });
}

describe("reading and checking an image layout archive", () => {
  test("a well-formed archive checks out: the index's one manifest, its config and layers, each blob hashed as read", async () => {
    const r = await makeRelease();
    const contents = await readLayoutBytes(r.archive);
    const layout = checkLayout(contents);
    assert.equal(layout.manifestDigest, r.digest);
    assert.equal(layout.refName, "edgeward:0.1.0");
    assert.equal(layout.manifest.layers.length, 2);
    assert.deepEqual(layout.configBytes, r.config);
    for (const l of r.layers) {
      const blob = contents.blobs.get(digestHex(l.descriptor.digest)!)!;
      assert.equal(blob.size, l.gzip.length);
      assert.equal(`sha256:${String(blob.uncompressedSha256)}`, descriptor(MEDIA_TYPE.layer, l.tar).digest);
    }
  });

  test("the archive is reproducible: the same parts give the same bytes", async () => {
    assert.deepEqual((await makeRelease()).archive, (await makeRelease()).archive);
  });

  describe("a tampered part names what was altered", () => {
    test("layer bytes changed in place", async () => {
      const r = await makeRelease();
      const hex = digestHex(r.layers[1]!.descriptor.digest)!;
      const blobs = new Map(r.blobs);
      const altered = Buffer.from(r.layers[1]!.gzip);
      altered[altered.length - 9]! ^= 0x01;
      blobs.set(hex, altered);
      await refused(await archiveOf(blobs, r.index), "blob-digest", /layer 1 sha256:[0-9a-f]{64} was altered/);
    });

    test("a layer of another size under the same name", async () => {
      const r = await makeRelease();
      const blobs = new Map(r.blobs);
      blobs.set(digestHex(r.layers[0]!.descriptor.digest)!, Buffer.concat([r.layers[0]!.gzip, Buffer.from("x")]));
      await refused(await archiveOf(blobs, r.index), "blob-digest", /layer 0 .* was altered/);
    });

    test("the manifest changed in place", async () => {
      const r = await makeRelease();
      const blobs = new Map(r.blobs);
      blobs.set(digestHex(r.digest)!, Buffer.from(r.manifest.toString("utf8").replace('"schemaVersion":2', '"schemaVersion":2 ')));
      await refused(await archiveOf(blobs, r.index), "blob-digest", /manifest sha256:[0-9a-f]{64} was altered/);
    });

    test("the config changed in place", async () => {
      const r = await makeRelease();
      const blobs = new Map(r.blobs);
      const configHex = digestHex(descriptor(MEDIA_TYPE.config, r.config).digest)!;
      blobs.set(configHex, Buffer.from(r.config.toString("utf8").replace("65532:65532", "0:0")));
      await refused(await archiveOf(blobs, r.index), "blob-digest", /config sha256:[0-9a-f]{64} was altered/);
    });

    test("a layer replaced and its descriptor and the index rewritten to match, but not the config's diff_id", async () => {
      const r = await makeRelease();
      const tar = Buffer.concat([r.layers[1]!.tar.subarray(0, r.layers[1]!.tar.length - 1024), Buffer.alloc(1024)]);
      const forged = gzipSync(Buffer.concat([tar.subarray(0, 512), Buffer.from(tar.subarray(512)).fill(0x41, 0, 4)]));
      const parts = assemble([r.layers[0]!, { gzip: forged, tar }], { configFor: () => r.config });
      await refused(await archiveOf(parts.blobs, parts.index), "diff-id", /layer 1 decompresses to sha256:[0-9a-f]{64}, the config lists sha256:/);
    });

    test("a blob the manifest names is missing", async () => {
      const r = await makeRelease();
      const blobs = new Map(r.blobs);
      blobs.delete(digestHex(r.layers[0]!.descriptor.digest)!);
      await refused(await archiveOf(blobs, r.index), "blob-missing", /layer 0 sha256:[0-9a-f]{64} is not in the archive/);
    });

    test("a blob nothing names", async () => {
      const r = await makeRelease();
      const blobs = new Map(r.blobs);
      const stray = Buffer.from("smuggled");
      blobs.set(digestHex(descriptor("x", stray).digest)!, stray);
      await refused(await archiveOf(blobs, r.index), "blob-unreferenced", /no descriptor names it/);
    });

    test("a descriptor's size that is not the blob's", async () => {
      const r = await makeRelease();
      const configDescriptor = descriptor(MEDIA_TYPE.config, r.config);
      const layers = r.layers.map((l, i) => (i === 0 ? { ...l.descriptor, size: l.descriptor.size + 1 } : l.descriptor));
      const manifest = imageManifest(configDescriptor, layers);
      const manifestDescriptor = descriptor(MEDIA_TYPE.manifest, manifest);
      const blobs = new Map(r.blobs);
      blobs.delete(digestHex(r.digest)!);
      blobs.set(digestHex(manifestDescriptor.digest)!, manifest);
      await refused(await archiveOf(blobs, imageIndex(manifestDescriptor)), "blob-size", /layer 0 .* is \d+ bytes, its descriptor says \d+/);
    });
  });

  describe("media types and shapes", () => {
    async function withManifest(edit: (manifest: Record<string, any>) => void, indexEdit?: (index: Record<string, any>) => void): Promise<Buffer> {
      const r = await makeRelease();
      const manifestValue = JSON.parse(r.manifest.toString("utf8"));
      edit(manifestValue);
      const manifest = encodeJson(manifestValue);
      const manifestDescriptor = descriptor(MEDIA_TYPE.manifest, manifest);
      const blobs = new Map(r.blobs);
      blobs.delete(digestHex(r.digest)!);
      blobs.set(digestHex(manifestDescriptor.digest)!, manifest);
      const index = JSON.parse(imageIndex(manifestDescriptor).toString("utf8"));
      indexEdit?.(index);
      return archiveOf(blobs, encodeJson(index));
    }

    test("a Docker manifest media type in the index", async () => {
      await refused(await withManifest(() => {}, (i) => (i.manifests[0].mediaType = "application/vnd.docker.distribution.manifest.v2+json")), "malformed-layout", /index.json manifest has media type .*docker.*, expected application\/vnd.oci.image.manifest.v1\+json/);
    });

    test("a layer of a foreign media type", async () => {
      await refused(await withManifest((m) => (m.layers[0].mediaType = "application/octet-stream")), "malformed-layout", /manifest layer 0 has media type "application\/octet-stream"/);
    });

    test("a config of a foreign media type", async () => {
      await refused(await withManifest((m) => (m.config.mediaType = "application/json")), "malformed-layout", /manifest config has media type "application\/json"/);
    });

    test("a digest that is not sha256", async () => {
      await refused(await withManifest((m) => (m.layers[1].digest = "sha512:abc")), "malformed-layout", /manifest layer 1 digest is not a sha256 digest/);
    });

    test("an index naming two manifests", async () => {
      await refused(await withManifest(() => {}, (i) => i.manifests.push(i.manifests[0])), "malformed-layout", /must name exactly one manifest \(it names 2\)/);
    });

    test("no oci-layout file", async () => {
      const r = await makeRelease();
      const tar = Buffer.concat([entry({ path: "index.json" }, r.index), END]);
      await refused(tar, "malformed-layout", /oci-layout is missing/);
    });
  });

  describe("hostile archives are refused before anything is trusted, and nothing is written to disk", () => {
    test("a truncated archive", async () => {
      const r = await makeRelease();
      await refused(r.archive.subarray(0, r.archive.length - 3000), "malformed-archive", /truncated|end-of-archive|Truncated/i);
      await refused(r.archive.subarray(0, 700), "malformed-archive", /truncated|whole number|Truncated/i);
    });

    test("an archive cut off before its end-of-archive blocks", async () => {
      const r = await makeRelease();
      await refused(r.archive.subarray(0, r.archive.length - 1024), "malformed-archive", /without its end-of-archive blocks/);
    });

    test("a gzip-compressed archive", async () => {
      await refused(gzipSync((await makeRelease()).archive), "malformed-archive", /gzip-compressed; an image archive \(\.oci\.tar\) is a plain tar/);
    });

    test("not a tar at all", async () => {
      await refused(Buffer.alloc(2048, 0x41), "malformed-archive", /not a valid tar archive|end-of-archive/);
    });

    test("a symbolic link", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "blobs/sha256/" + "a".repeat(64), type: "SymbolicLink", linkpath: "/etc/passwd" }), END]);
      await refused(tar, "malformed-archive", /is a symbolic link; only regular files and directories are allowed/);
    });

    test("a hard link", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "index.json", type: "Link", linkpath: "oci-layout" }), END]);
      await refused(tar, "malformed-archive", /is a hard link/);
    });

    test("a device", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "index.json", type: "CharacterDevice" }), END]);
      await refused(tar, "malformed-archive", /is a character device/);
    });

    test("a path that climbs out", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "blobs/../../etc/cron.d/x" }, Buffer.from("x")), END]);
      await refused(tar, "malformed-archive", /climbs out of the archive/);
    });

    test("an absolute path", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "/etc/passwd" }, Buffer.from("x")), END]);
      await refused(tar, "malformed-archive", /is absolute/);
    });

    test("a path outside the layout", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "blobs/sha256/notahexdigest" }, Buffer.from("x")), END]);
      await refused(tar, "malformed-archive", /is not part of an OCI image layout/);
    });

    test("the same path twice", async () => {
      const tar = Buffer.concat([LAYOUT, LAYOUT, END]);
      await refused(tar, "malformed-archive", /holds "oci-layout" twice/);
    });

    test("too many entries", async () => {
      const blobs = Array.from({ length: 12 }, (_, i) => entry({ path: `blobs/sha256/${i.toString(16).padStart(64, "0")}` }, Buffer.from("x")));
      await refused(Buffer.concat([LAYOUT, ...blobs, END]), "malformed-archive", /more than 10 entries/, { ...DEFAULT_READ_LIMITS, maxEntries: 10 });
    });

    test("an oversized entry is refused from its header, before its bytes are read", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: `blobs/sha256/${"b".repeat(64)}` }, Buffer.alloc(4096)), END]);
      await refused(tar, "malformed-archive", /is 4096 bytes, more than the 1024 allowed/, { ...DEFAULT_READ_LIMITS, maxBlobBytes: 1024 });
    });

    test("an oversized index.json", async () => {
      const tar = Buffer.concat([LAYOUT, entry({ path: "index.json" }, Buffer.alloc(4096, 0x20)), END]);
      await refused(tar, "malformed-archive", /"index.json" is 4096 bytes/, { ...DEFAULT_READ_LIMITS, maxSmallBytes: 1024 });
    });

    test("a gzip layer that inflates beyond the limit", async () => {
      const r = await makeRelease();
      await refused(r.archive, "malformed-archive", /inflate to more than 100 bytes/, { ...DEFAULT_READ_LIMITS, maxInflatedBytes: 100 });
    });
  });

  test("property: any one flipped byte is either harmless (padding) or refused with a named check", async () => {
    const r = await makeRelease();
    const original = checkLayout(await readLayoutBytes(r.archive));
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: r.archive.length - 1 }), fc.integer({ min: 1, max: 255 }), async (offset, mask) => {
        const bytes = Buffer.from(r.archive);
        bytes[offset]! ^= mask;
        let layout;
        try {
          layout = checkLayout(await readLayoutBytes(bytes));
        } catch (error) {
          assert.ok(error instanceof ReleaseError, `offset ${offset}: ${String(error)}`);
          return;
        }
        // Accepted: the flip hit a byte no check covers (tar padding, an mtime), never the image itself.
        assert.equal(layout.manifestDigest, original.manifestDigest);
        assert.deepEqual(layout.configBytes, original.configBytes);
      }),
      { numRuns: 150 },
    );
  });
});
