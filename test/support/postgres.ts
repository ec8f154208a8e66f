import { execFile, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { atExit } from "./processes.ts";

const run = promisify(execFile);

const PG_ROOT = "/usr/lib/postgresql";

/** A throwaway PostgreSQL cluster listening only on a Unix socket in its own temporary directory. */
export interface TestPostgres {
  /** Connection URL of the cluster's `postgres` database (superuser, trust authentication). */
  url: string;
  /** Creates an empty database and returns its URL, so each test starts from nothing. */
  freshDatabase(): Promise<string>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The newest installed server's bin directory; the Debian/Ubuntu layout is /usr/lib/postgresql/<major>/bin. */
function findServerBin(): string {
  const majors = existsSync(PG_ROOT)
    ? readdirSync(PG_ROOT).filter((v) => /^\d+$/.test(v) && existsSync(join(PG_ROOT, v, "bin", "initdb")))
    : [];
  const newest = majors.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) {
    throw new Error(
      `PostgreSQL server binaries (initdb, pg_ctl) not found under ${PG_ROOT}/*/bin: ` +
      "the PostgreSQL storage tests need a real server — install it with `apt-get install postgresql`",
    );
  }
  return join(PG_ROOT, newest, "bin");
}

/**
 * initdb and postgres refuse to run as root, and tests here may run as root: then the server runs
 * as the `postgres` OS user (which the postgresql package creates) and owns the directory.
 */
function serverUser(): { prefix: string[]; uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  const id = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (id.status !== 0 || gid.status !== 0) {
    throw new Error("running as root, but there is no `postgres` OS user to run the test server as — install `postgresql`");
  }
  return { prefix: ["runuser", "-u", "postgres", "--"], uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function runAs(prefix: string[], command: string, args: string[]): Promise<void> {
  const argv = [...prefix, command, ...args];
  try {
    await run(argv[0]!, argv.slice(1), { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${command} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

/**
 * Starts a cluster: initdb into a fresh temporary directory, then pg_ctl start with the socket in
 * that directory and no TCP listener, so parallel test files never fight over a port. Durability
 * settings are off: the cluster is thrown away, and the suite tests the storage code, not fsync.
 */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = findServerBin();
  const user = serverUser();
  const prefix = user?.prefix ?? [];
  const dir = mkdtempSync(join(tmpdir(), "edgeward-pg-"));
  if (user !== null) chownSync(dir, user.uid, user.gid);
  const data = join(dir, "data");
  const log = join(dir, "server.log");
  let stopped = false;

  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    if (existsSync(join(data, "postmaster.pid"))) {
      const argv = [...prefix, join(bin, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w"];
      spawnSync(argv[0]!, argv.slice(1), { stdio: "ignore", timeout: 30_000 });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // A test file that dies before its after() hook (a timeout, an uncaught error, a signal) must not leave a server
  // running. pg_ctl starts the server in a session of its own, out of reach of a process-group kill, so it is
  // stopped here through its data directory.
  const unregister = atExit(stopNow);

  try {
    await runAs(prefix, join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
    const options = [
      "-c listen_addresses=''",
      `-c unix_socket_directories='${dir}'`,
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
      "-c max_connections=50",
    ].join(" ");
    await runAs(prefix, join(bin, "pg_ctl"), ["start", "-D", data, "-l", log, "-w", "-t", "30", "-o", options]);
  } catch (err) {
    const serverLog = existsSync(log) && statSync(log).isFile() ? spawnSync("tail", ["-n", "20", log], { encoding: "utf8" }).stdout : "";
    stopNow();
    throw new Error(`could not start the test PostgreSQL: ${(err as Error).message}${serverLog ? `\nserver log:\n${serverLog}` : ""}`);
  }

  const urlFor = (database: string) => `postgresql://postgres@/${database}?host=${encodeURIComponent(dir)}`;
  let databases = 0;

  return {
    url: urlFor("postgres"),
    async freshDatabase() {
      databases += 1;
      const name = `edgeward_test_${databases}`;
      const client = new pg.Client({ connectionString: urlFor("postgres") });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      unregister();
      try {
        await runAs(prefix, join(bin, "pg_ctl"), ["stop", "-D", data, "-m", "fast", "-w", "-t", "30"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
