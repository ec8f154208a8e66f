#!/usr/bin/env node
// The `edgeward` command. Deliberately plain (no top-level await, nothing newer than ES5 but the module syntax), so
// that every Node that runs ES modules parses it and one too old for Edgeward prints one line saying what is needed,
// not a stack trace. The program itself is the build in ../dist (`npm run build`); a checkout that was never built
// runs its TypeScript sources, which needs Node's type stripping.
import { existsSync } from "fs";

var MINIMUM = "22.13.0"; // the build's; keep in step with "engines" in package.json
var MINIMUM_SOURCES = "22.18.0"; // type stripping on by default

function atLeast(version, minimum) {
  var have = version.split(".").map(Number);
  var need = minimum.split(".").map(Number);
  for (var i = 0; i < need.length; i++) {
    if (have[i] !== need[i]) return have[i] > need[i];
  }
  return true;
}

function fail(message) {
  process.stderr.write("edgeward: " + message + "\n");
  process.exit(1);
}

var built = new URL("../dist/cli/run.js", import.meta.url);
var sources = new URL("../src/cli/run.ts", import.meta.url);
var here = "Node.js " + process.version + " (" + process.execPath + ")";

if (!atLeast(process.versions.node, MINIMUM)) {
  fail("needs Node.js >= " + MINIMUM + ", but this is " + here + "; install Node.js 22 LTS or newer (24 recommended)");
} else if (existsSync(built)) {
  import(built.href);
} else if (!existsSync(sources)) {
  fail("this copy has no build: " + decodeURIComponent(built.pathname) + " is missing (npm run build)");
} else if (!atLeast(process.versions.node, MINIMUM_SOURCES)) {
  fail("running the TypeScript sources needs Node.js >= " + MINIMUM_SOURCES + ", but this is " + here + "; run `npm run build` first, or use the Node the checkout installs (npx edgeward)");
} else {
  import(sources.href);
}
