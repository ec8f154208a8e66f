// A checkout that was never built: bin/edgeward.js hands over here (this file is not in the published package), and
// the TypeScript sources run directly, which needs Node's type stripping (on by default from 22.18). Plain JavaScript
// for the same reason as the bin: a Node too old for it must read this far and print one line.
var MINIMUM_SOURCES = "22.18.0";

function atLeast(version, minimum) {
  var have = version.split(".").map(Number);
  var need = minimum.split(".").map(Number);
  for (var i = 0; i < need.length; i++) {
    if (have[i] !== need[i]) return have[i] > need[i];
  }
  return true;
}

if (!atLeast(process.versions.node, MINIMUM_SOURCES)) {
  process.stderr.write("edgeward: running the TypeScript sources needs Node.js >= " + MINIMUM_SOURCES + ", but this is Node.js " +
    process.version + " (" + process.execPath + "); run `npm run build` first, or use the Node the checkout installs (npx edgeward)\n");
  process.exit(1);
} else {
  import(new URL("../src/cli/run.ts", import.meta.url).href);
}
