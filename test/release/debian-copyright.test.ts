import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { copyrightLicenses, parseDeb822, spdxForDebianName } from "../../packaging/image/debian-copyright.ts";

const DEP5 = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ca-certificates
Source: https://example.org/ca-certificates

Files: *
Copyright: 2003 Fumitoshi UKAI
License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 .
 it under the terms of the GNU General Public License

Files: mozilla/*
Copyright: Mozilla Foundation
License: MPL-2.0

Files: sbin/*
Copyright: none
License: GPL-2+ or Artistic, BSD-3-clause and Expat

License: GPL-2+
 On Debian systems, see /usr/share/common-licenses/GPL-2.
`;

const FREE_FORM = `This is the Debian prepackaged version of the GNU C Library.

All code incorporated into the GNU C Library is covered by the GNU Lesser General Public License; see
/usr/share/common-licenses/LGPL-2.1. Some programs are under /usr/share/common-licenses/GPL-2 instead.
`;

describe("Debian copyright files", () => {
  test("deb822 paragraphs: fields fold case, continuation lines join, '.' is an empty line", () => {
    const [header, files] = parseDeb822(DEP5);
    assert.equal(header!.get("upstream-name"), "ca-certificates");
    assert.equal(files!.get("license"), "GPL-2+\nThis program is free software; you can redistribute it and/or modify\n\nit under the terms of the GNU General Public License");
  });

  test("a DEP-5 file: every License field's names, split at or/and/commas, as SPDX ids where Debian's name has one", () => {
    assert.deepEqual(copyrightLicenses(DEP5), ["Artistic-1.0-Perl", "BSD-3-Clause", "GPL-2.0-or-later", "MIT", "MPL-2.0"]);
  });

  test("a free-form file: the common-licenses it refers to, as Debian names them", () => {
    assert.deepEqual(copyrightLicenses(FREE_FORM), ["GPL-2", "LGPL-2.1"]);
  });

  test("names without an SPDX equivalent stay as Debian gives them", () => {
    assert.equal(spdxForDebianName("public-domain"), "public-domain");
    assert.equal(spdxForDebianName("LGPL-2.1+"), "LGPL-2.1-or-later");
  });

  test("property: any text parses, and the licenses come back sorted, each once, never empty strings", () => {
    const line = fc.oneof(fc.string(), fc.constantFrom("License: GPL-2+ or MIT", "Format: copyright-format/1.0", " continued", "", "#c", "/usr/share/common-licenses/GPL-3"));
    fc.assert(fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
      const text = lines.join("\n");
      parseDeb822(text);
      const names = copyrightLicenses(text);
      assert.deepEqual(names, [...new Set(names)].sort());
      assert.ok(names.every((n) => n !== ""));
    }));
  });
});
