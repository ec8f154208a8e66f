// The command line's entry: bin/edgeward.js imports the build of this file (dist/cli/run.js) once it has checked the
// Node version; development runs this source directly (`node src/cli/run.ts …`: npm start, the tests).
import { main } from "./main.ts";

process.exitCode = await main(process.argv.slice(2));
