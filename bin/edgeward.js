#!/usr/bin/env node
// The `edgeward` command. Deliberately plain (no top-level await, nothing newer than ES5 but the module syntax), so
// that every Node that runs ES modules parses it and one too old for Edgeward prints one line saying what is needed,
// not a stack trace. The program is the build in ../dist (`npm run build`), the only thing this file loads; a checkout
// that was never built hands over to packaging/run-sources.js (not in the package), which runs the sources.
import { existsSync } from "fs";

var MINIMUM = "22.13.0"; // the build's; keep in step with "engines" in package.json

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
var checkout = new URL("../packaging/run-sources.js", import.meta.url);
var here = "Node.js " + process.version + " (" + process.execPath + ")";

if (!atLeast(process.versions.node, MINIMUM)) {
  fail("needs Node.js >= " + MINIMUM + ", but this is " + here + "; install Node.js 22 LTS or newer (24 recommended)");
} else if (existsSync(built)) {
  import(built.href);
} else if (existsSync(checkout)) {
  import(checkout.href);
} else {
  fail("this copy has no build: " + decodeURIComponent(built.pathname) + " is missing (npm run build)");
}
