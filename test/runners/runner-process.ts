// Entry for tests: runs `edgeward runner` in its own process, as the gateway does.
import { run } from "../../src/cli/runner.ts";

const code = await run(process.argv.slice(2), {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  cwd: process.cwd(),
});
process.exit(code);
