// Debian control data and copyright files: deb822 paragraphs, and the license names a package's copyright file gives.

/** deb822 (Debian Policy 5.1): paragraphs of "Field: value" lines, continuation lines indented; field names fold case. */
export function parseDeb822(text: string): Map<string, string>[] {
  const paragraphs: Map<string, string>[] = [];
  let current: Map<string, string> | null = null;
  let field: string | null = null;
  for (const raw of text.replace(/\r\n?/g, "\n").split("\n")) {
    if (raw.trim() === "") {
      current = null;
      field = null;
      continue;
    }
    if (raw.startsWith("#")) continue;
    if (/^[ \t]/.test(raw)) {
      if (current !== null && field !== null) current.set(field, `${current.get(field)!}\n${raw.trim() === "." ? "" : raw.trim()}`);
      continue;
    }
    const colon = raw.indexOf(":");
    if (colon <= 0) continue;
    if (current === null) {
      current = new Map();
      paragraphs.push(current);
    }
    field = raw.slice(0, colon).trim().toLowerCase();
    current.set(field, raw.slice(colon + 1).trim());
  }
  return paragraphs;
}

/** Debian's short license names (copyright-format 1.0, "License specification") with an SPDX id of the same meaning. */
const SPDX: Record<string, string> = {
  "apache-2.0": "Apache-2.0",
  "artistic": "Artistic-1.0-Perl",
  "bsd-2-clause": "BSD-2-Clause",
  "bsd-3-clause": "BSD-3-Clause",
  "bsd-4-clause": "BSD-4-Clause",
  "cc0-1.0": "CC0-1.0",
  "expat": "MIT",
  "gfdl-1.2": "GFDL-1.2-only",
  "gfdl-1.2+": "GFDL-1.2-or-later",
  "gfdl-1.3": "GFDL-1.3-only",
  "gfdl-1.3+": "GFDL-1.3-or-later",
  "gpl-1": "GPL-1.0-only",
  "gpl-1+": "GPL-1.0-or-later",
  "gpl-2": "GPL-2.0-only",
  "gpl-2+": "GPL-2.0-or-later",
  "gpl-3": "GPL-3.0-only",
  "gpl-3+": "GPL-3.0-or-later",
  "isc": "ISC",
  "lgpl-2": "LGPL-2.0-only",
  "lgpl-2+": "LGPL-2.0-or-later",
  "lgpl-2.1": "LGPL-2.1-only",
  "lgpl-2.1+": "LGPL-2.1-or-later",
  "lgpl-3": "LGPL-3.0-only",
  "lgpl-3+": "LGPL-3.0-or-later",
  "mpl-1.1": "MPL-1.1",
  "mpl-2.0": "MPL-2.0",
  "zlib": "Zlib",
};

/** A Debian license name as SPDX where one means the same; otherwise the name as Debian gives it. */
export function spdxForDebianName(name: string): string {
  return SPDX[name.toLowerCase()] ?? name;
}

const DEP5_FORMAT = /copyright-format\/1\.0|dep-?5/i;
const COMMON_LICENSE = /\/usr\/share\/common-licenses\/([A-Za-z0-9][A-Za-z0-9._+-]*[A-Za-z0-9+])/g;

/** "GPL-2+ or Artistic", "LGPL-2.1+ and GPL-2+, BSD-3-clause": the names an expression mentions, in order. */
function namesIn(synopsis: string): string[] {
  return synopsis.split(/\s+(?:or|and)\s+|\s*,\s*(?:and\s+|or\s+)?/i).map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * The licenses a package's copyright file names: from every License field of a machine-readable (DEP-5) file, mapped
 * to SPDX ids where Debian's short name has one; or the /usr/share/common-licenses/NAME references of a free-form
 * one, as named. Sorted, each once; empty when the file names none.
 */
export function copyrightLicenses(text: string): string[] {
  const paragraphs = parseDeb822(text);
  const names: string[] = [];
  if (DEP5_FORMAT.test(paragraphs[0]?.get("format") ?? "")) {
    for (const paragraph of paragraphs) {
      const license = paragraph.get("license");
      if (license === undefined) continue;
      names.push(...namesIn(license.split("\n")[0]!).map(spdxForDebianName));
    }
  } else {
    // A reference to a license file says which text applies, not whether "or later" does: the name stays Debian's.
    for (const match of text.matchAll(COMMON_LICENSE)) names.push(match[1]!);
  }
  return [...new Set(names)].sort();
}
