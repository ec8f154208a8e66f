import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import {
  attestationLayout,
  checkLayout,
  CYCLONEDX_PREDICATE_TYPE,
  decodeBase64,
  descriptor,
  digestHex,
  encodeEnvelope,
  encodeJson,
  encodeStatement,
  imageIndex,
  imageStatement,
  layoutArchive,
  MEDIA_TYPE,
  parseEnvelope,
  readLayoutBytes,
  readSbom,
  RELEASE_PREDICATE_TYPE,
  ReleaseError,
  sha256Digest,
  signatureLayout,
  signEnvelope,
  signRelease,
  simpleSigningPayload,
  unsignedEnvelope,
  verifyRelease,
  type ArtifactLayout,
  type ReleaseCheck,
  type ReleaseInputs,
  type SignedRelease,
} from "../../src/release/index.ts";
import type { TrustedKeys } from "../../src/bundle/index.ts";
import { archiveOf, assemble, EPOCH, makeKey, makeRelease, provenanceFor, sbomFor, type SyntheticRelease } from "../support/release-factory.ts";

type Key = Awaited<ReturnType<typeof makeKey>>;

async function layoutOf(artifact: ArtifactLayout) {
  return readLayoutBytes(await layoutArchive(artifact.blobs, artifact.index, EPOCH));
}

async function inputsOf(r: SyntheticRelease, signed: SignedRelease, sbom: Buffer = r.sbom): Promise<ReleaseInputs> {
  return {
    image: await readLayoutBytes(r.archive),
    release: signed.release,
    sbom,
    sbomAttestation: signed.sbomAttestation,
    provenance: signed.provenance,
    signature: await layoutOf(signed.signature),
    attestations: await layoutOf(signed.attestations),
  };
}

function refused(inputs: ReleaseInputs, keys: TrustedKeys, check: ReleaseCheck, message: RegExp): void {
  assert.throws(() => verifyRelease(inputs, keys), (error: unknown) => {
    assert.ok(error instanceof ReleaseError, String(error));
    assert.equal(error.check, check, error.message);
    assert.match(error.message, message);
    return true;
  });
}

describe("release sign and verify", () => {
  let r: SyntheticRelease;
  let key: Key;
  let other: Key;
  let keys: TrustedKeys;
  let signed: SignedRelease;
  let good: ReleaseInputs;

  before(async () => {
    r = await makeRelease();
    key = await makeKey();
    other = await makeKey();
    keys = new Map([[key.trusted.kid, key.trusted]]);
    signed = signRelease({ image: checkLayout(await readLayoutBytes(r.archive)), sbom: r.sbom, provenance: r.provenance, key: key.signing, dockerReference: "registry.example.org/edgeward" });
    good = await inputsOf(r, signed);
  });

  test("a signed release verifies: every statement is about the image digest, signed by the key", () => {
    const v = verifyRelease(good, keys);
    assert.equal(v.manifestDigest, r.digest);
    assert.deepEqual({ name: v.image.name, version: v.image.version, tag: v.image.tag, layers: v.image.layers }, { name: "edgeward", version: "0.1.0", tag: "edgeward:0.1.0", layers: 2 });
    for (const part of [v.release, v.sbom, v.provenance]) assert.deepEqual(part.signedBy, [key.trusted.kid]);
    assert.equal(v.sbom.specVersion, "1.6");
    assert.equal(v.cosign.dockerReference, "registry.example.org/edgeward");
    assert.deepEqual(v.cosign.attestations, [CYCLONEDX_PREDICATE_TYPE, "https://slsa.dev/provenance/v1"]);
  });

  test("signing is deterministic, and a second key co-signs the same statements", async () => {
    const again = signRelease({ image: checkLayout(await readLayoutBytes(r.archive)), sbom: r.sbom, provenance: r.provenance, key: key.signing, dockerReference: "registry.example.org/edgeward" });
    assert.deepEqual(again.release, signed.release, "Ed25519 is deterministic");
    const cosigned = signRelease({
      image: checkLayout(await readLayoutBytes(r.archive)), sbom: r.sbom, provenance: signed.provenance,
      previous: { release: signed.release, sbomAttestation: signed.sbomAttestation }, key: other.signing, dockerReference: "registry.example.org/edgeward",
    });
    assert.equal(parseEnvelope(cosigned.release, "r").signatures.length, 2);
    assert.equal(parseEnvelope(cosigned.provenance, "p").signatures.length, 2);
    const both = new Map([[key.trusted.kid, key.trusted], [other.trusted.kid, other.trusted]]);
    const inputs = { ...(await inputsOf(r, cosigned)) };
    assert.deepEqual(verifyRelease(inputs, both).release.signedBy, [key.trusted.kid, other.trusted.kid].sort());
    // The cosign signature image holds the last signer's signature: the first key alone does not verify it.
    refused(inputs, keys, "unknown-key", /the cosign signature: no signature verifies with a trusted key/);
  });

  test("the cosign signature is cosign's simple-signing payload, Ed25519-signed, in the layer annotation", async () => {
    const layout = checkLayout(good.signature!, { layerMediaTypes: [MEDIA_TYPE.cosignSimpleSigning], diffIds: false });
    assert.equal(layout.refName, `sha256-${digestHex(r.digest)}.sig`);
    const [layer] = layout.manifest.layers;
    const payload = good.signature!.blobs.get(digestHex(layer!.digest)!)!.bytes!;
    assert.equal(payload.toString(), `{"critical":{"identity":{"docker-reference":"registry.example.org/edgeward"},"image":{"docker-manifest-digest":"${r.digest}"},"type":"cosign container image signature"},"optional":null}`);
    assert.match(layer!.annotations!["dev.cosignproject.cosign/signature"]!, /^[A-Za-z0-9+/]{86}==$/);
  });

  test("signing refuses an SBOM or a provenance about another image", async () => {
    const image = checkLayout(await readLayoutBytes(r.archive));
    const elsewhere = sha256Digest(Buffer.from("elsewhere"));
    assert.throws(() => signRelease({ image, sbom: sbomFor(elsewhere), provenance: r.provenance, key: key.signing, dockerReference: "x" }), /the SBOM describes sha256:[0-9a-f]+, not the image/);
    assert.throws(() => signRelease({ image, sbom: r.sbom, provenance: provenanceFor(elsewhere), key: key.signing, dockerReference: "x" }), /the provenance is about sha256:[0-9a-f]+, not the image/);
  });

  describe("each tampering is refused, naming the check", () => {
    test("a layer's bytes", async () => {
      const blobs = new Map(r.blobs);
      const layer = Buffer.from(r.layers[0]!.gzip);
      layer[20]! ^= 0xff;
      blobs.set(digestHex(r.layers[0]!.descriptor.digest)!, layer);
      refused({ ...good, image: await readLayoutBytes(await archiveOf(blobs, r.index)) }, keys, "blob-digest", /layer 0 .* was altered/);
    });

    test("the manifest", async () => {
      const blobs = new Map(r.blobs);
      blobs.set(digestHex(r.digest)!, Buffer.from(r.manifest.toString().replace("tar+gzip", "tar+gzip ")));
      refused({ ...good, image: await readLayoutBytes(await archiveOf(blobs, r.index)) }, keys, "blob-digest", /manifest .* was altered/);
    });

    test("a whole other image under the same release files", async () => {
      const otherImage = await makeReleaseWithVersion();
      refused({ ...good, image: await readLayoutBytes(otherImage.archive) }, keys, "digest-mismatch", /the release statement is about sha256:[0-9a-f]{64}, not the image/);
    });

    test("the SBOM file edited", () => {
      const edited = Buffer.from(r.sbom.toString().replace('"7.5.23"', '"7.5.24"'));
      refused({ ...good, sbom: edited }, keys, "sbom-mismatch", /the SBOM differs from the SBOM that was signed/);
    });

    test("an SBOM about another image, signed by the trusted key", () => {
      const elsewhere = sbomFor(sha256Digest(Buffer.from("elsewhere")));
      const statement = imageStatement("edgeward", r.digest, CYCLONEDX_PREDICATE_TYPE, readSbom(elsewhere).document);
      const attestation = encodeEnvelope(signEnvelope(unsignedEnvelope(encodeStatement(statement)), key.signing));
      refused({ ...good, sbom: elsewhere, sbomAttestation: attestation }, keys, "digest-mismatch", /the SBOM describes sha256:[0-9a-f]{64}, not the image/);
    });

    test("the SBOM attestation's subject", () => {
      const statement = imageStatement("edgeward", sha256Digest(Buffer.from("x")), CYCLONEDX_PREDICATE_TYPE, readSbom(r.sbom).document);
      const attestation = encodeEnvelope(signEnvelope(unsignedEnvelope(encodeStatement(statement)), key.signing));
      refused({ ...good, sbomAttestation: attestation }, keys, "digest-mismatch", /the SBOM attestation is about sha256:[0-9a-f]{64}, not the image/);
    });

    test("the provenance's subject", () => {
      const provenance = encodeEnvelope(signEnvelope(parseEnvelope(provenanceFor(sha256Digest(Buffer.from("x"))), "p"), key.signing));
      refused({ ...good, provenance }, keys, "digest-mismatch", /the provenance is about sha256:[0-9a-f]{64}, not the image/);
    });

    test("the release statement's version", () => {
      const statement = imageStatement("edgeward", r.digest, RELEASE_PREDICATE_TYPE, { name: "edgeward", version: "9.9.9", os: "linux", architecture: "amd64" });
      refused({ ...good, release: encodeEnvelope(signEnvelope(unsignedEnvelope(encodeStatement(statement)), key.signing)) }, keys, "digest-mismatch", /the release statement says version "9.9.9", the image says "0.1.0"/);
    });

    test("a signature's bytes", () => {
      const envelope = parseEnvelope(good.provenance!, "p");
      const sig = decodeBase64(envelope.signatures[0]!.sig)!;
      sig[10]! ^= 1;
      const provenance = encodeEnvelope({ ...envelope, signatures: [{ keyid: envelope.signatures[0]!.keyid, sig: sig.toString("base64") }] });
      refused({ ...good, provenance }, keys, "bad-signature", /the provenance: the signature by trusted key .* does not verify/);
    });

    test("a signed payload changed under its signature", () => {
      const envelope = parseEnvelope(good.release!, "r");
      const payload = decodeBase64(envelope.payload)!.toString().replace('"0.1.0"', '"0.1.1"');
      refused({ ...good, release: encodeEnvelope({ ...envelope, payload: Buffer.from(payload).toString("base64") }) }, keys, "bad-signature", /the release statement: the signature .* does not verify/);
    });

    test("the wrong key", () => {
      refused(good, new Map([[other.trusted.kid, other.trusted]]), "unknown-key", /the release statement: no signature is by a trusted key/);
    });

    test("a missing signature", () => {
      refused({ ...good, release: undefined }, keys, "signature-missing", /the release statement is missing: the release is not signed/);
      refused({ ...good, provenance: r.provenance }, keys, "signature-missing", /the provenance holds no signature/);
      refused({ ...good, signature: undefined }, keys, "signature-missing", /the cosign signature image is missing/);
      refused({ ...good, attestations: undefined }, keys, "signature-missing", /the cosign attestation image is missing/);
    });

    test("a cosign signature for another digest, signed by the trusted key", async () => {
      const elsewhere = signatureLayout(sha256Digest(Buffer.from("elsewhere")), "registry.example.org/edgeward", key.signing);
      refused({ ...good, signature: await layoutOf(elsewhere) }, keys, "digest-mismatch", /the cosign signature is for sha256:[0-9a-f]{64}, not the image/);
    });

    test("a cosign signature by another key", async () => {
      refused({ ...good, signature: await layoutOf(signatureLayout(r.digest, "registry.example.org/edgeward", other.signing)) }, keys, "unknown-key", /the cosign signature: no signature verifies with a trusted key/);
    });

    test("a cosign payload edited under its signature annotation", async () => {
      const layout = signatureLayout(r.digest, "registry.example.org/edgeward", key.signing);
      const manifestBytes = layout.blobs.get(digestHex(layout.manifestDigest)!)!;
      const manifest = JSON.parse(manifestBytes.toString());
      const forgedPayload = simpleSigningPayload("evil.example.org/edgeward", r.digest);
      const forged = signatureLayout(r.digest, "evil.example.org/edgeward", other.signing);
      const forgedManifest = JSON.parse(forged.blobs.get(digestHex(forged.manifestDigest)!)!.toString());
      forgedManifest.layers[0].annotations["dev.cosignproject.cosign/signature"] = manifest.layers[0].annotations["dev.cosignproject.cosign/signature"];
      const blobs = new Map(forged.blobs);
      blobs.delete(digestHex(forged.manifestDigest)!);
      const rewritten = encodeJson(forgedManifest);
      const d = descriptor(MEDIA_TYPE.manifest, rewritten);
      blobs.set(digestHex(d.digest)!, rewritten);
      assert.ok(blobs.has(digestHex(sha256Digest(forgedPayload))!));
      refused({ ...good, signature: await readLayoutBytes(await layoutArchive(blobs, imageIndex(d), EPOCH)) }, keys, "unknown-key", /no signature verifies with a trusted key/);
    });

    test("a cosign attestation image without the provenance", async () => {
      const partial = attestationLayout(r.digest, [{ predicateType: CYCLONEDX_PREDICATE_TYPE, envelope: signed.sbomAttestation }]);
      refused({ ...good, attestations: await layoutOf(partial) }, keys, "signature-missing", /holds no https:\/\/slsa.dev\/provenance\/v1 attestation/);
    });
  });
});

/** The same files, but version 0.2.0: a different image digest. */
async function makeReleaseWithVersion(): Promise<SyntheticRelease> {
  const base = await makeRelease();
  const parts = assemble(base.layers, { version: "0.2.0" });
  return { ...parts, archive: await archiveOf(parts.blobs, parts.index), sbom: sbomFor(parts.digest), provenance: provenanceFor(parts.digest) };
}
