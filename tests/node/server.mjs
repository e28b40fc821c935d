// Starts and stops `baichuan serve` for the Node.js client tests.
//
// Where things are:
//   BAICHUAN_CLI         the `baichuan` binary (CTest passes $<TARGET_FILE:baichuan_cli>); when unset,
//                        <repo>/build/bin/baichuan, then <repo>/build-server/bin/baichuan.
//   BAICHUAN_SHARED_DIR  the shared data folder (default <repo>/../shared); the test model is
//                        <shared>/reference/b2-7b-tiny (random weights: the text it writes is noise).
// A test file whose model is absent is skipped as a whole; its skip message starts with
// WHOLE_FILE_SKIP, which CTest's SKIP_REGULAR_EXPRESSION turns into a skipped test.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WHOLE_FILE_SKIP = 'baichuan node test skipped:';

const here = path.dirname(fileURLToPath(import.meta.url));
// The source tree's tests/node, or CTest's copy of it in the build tree: BAICHUAN_SOURCE_DIR says.
export const repoDir = process.env.BAICHUAN_SOURCE_DIR
  ? path.resolve(process.env.BAICHUAN_SOURCE_DIR)
  : path.resolve(here, '..', '..');
export const sharedDir = process.env.BAICHUAN_SHARED_DIR
  ? path.resolve(process.env.BAICHUAN_SHARED_DIR)
  : path.resolve(repoDir, '..', 'shared');
export const modelDir = path.join(sharedDir, 'reference', 'b2-7b-tiny');

function findCli() {
  if (process.env.BAICHUAN_CLI) return process.env.BAICHUAN_CLI;
  for (const dir of ['build', 'build-server']) {
    const candidate = path.join(repoDir, dir, 'bin', 'baichuan');
    if (existsSync(candidate)) return candidate;
  }
  return null;
}
export const cliPath = findCli();

// Why this file's tests cannot run here (a string for node:test's `skip`), or false. A missing
// binary is only a skip when nobody named one: CTest always names it, and then its absence fails.
export function skipReason() {
  if (!existsSync(path.join(modelDir, 'config.json'))) {
    return `${WHOLE_FILE_SKIP} the test model ${modelDir} is absent (set BAICHUAN_SHARED_DIR)`;
  }
  if (!cliPath) return `${WHOLE_FILE_SKIP} no baichuan binary found (set BAICHUAN_CLI)`;
  return false;
}

// True when the binary is built with AddressSanitizer (slower, and its allocator keeps freed memory
// in quarantine, so resident memory is not a leak signal there).
export function isSanitized() {
  if (process.env.BAICHUAN_SANITIZE && /^(1|on|true|yes)$/i.test(process.env.BAICHUAN_SANITIZE)) return true;
  try {
    return readFileSync(cliPath).includes('__asan_init');
  } catch {
    return false;
  }
}

const LISTENING = /^baichuan serve: listening on http:\/\/(\S+):(\d+)\s*$/m;
const STDERR_KEEP = 256 * 1024;

// Spawns `baichuan serve -m <tiny model> --port 0 -t 1 <args>` and resolves once it printed its
// listening line. Returns { proc, pid, port, url, baseURL, stderr(), exited, stop() }.
export async function startServer({ args = [], readyTimeoutMs = 60_000, env = {} } = {}) {
  const reason = skipReason();
  if (reason) throw new Error(reason);
  if (!existsSync(cliPath)) throw new Error(`BAICHUAN_CLI=${cliPath} does not exist: build baichuan_cli first`);
  const argv = ['serve', '-m', modelDir, '--port', '0', '-t', '1', ...args];
  const proc = spawn(cliPath, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  let stdout = '';
  const keep = (s, chunk) => (s + chunk).slice(-STDERR_KEEP);
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (c) => { stdout = keep(stdout, c); });

  // Never leave a server behind, whatever happens to this process.
  const killOnExit = () => { try { proc.kill('SIGKILL'); } catch { /* already gone */ } };
  process.on('exit', killOnExit);

  const exited = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      process.off('exit', killOnExit);
      resolve({ code, signal });
    });
  });
  const describe = () => `command: ${cliPath} ${argv.join(' ')}\n--- server stderr (tail) ---\n${stderr.slice(-8000)}` +
    (stdout ? `\n--- server stdout (tail) ---\n${stdout.slice(-2000)}` : '');

  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`baichuan serve printed no listening line within ${readyTimeoutMs} ms\n${describe()}`));
    }, readyTimeoutMs);
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${cliPath}: ${e.message}`));
    });
    proc.stderr.on('data', (c) => {
      stderr = keep(stderr, c);
      const m = LISTENING.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve({ host: m[1], port: Number(m[2]) });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`baichuan serve exited (code ${code}, signal ${signal}) before listening\n${describe()}`));
    });
  });

  // A wildcard bind address is reached through the loopback interface.
  const host = ['0.0.0.0', '::', '[::]'].includes(ready.host) ? '127.0.0.1' : ready.host;
  const url = `http://${host}:${ready.port}`;
  let stopped = null;
  return {
    proc,
    pid: proc.pid,
    host,
    port: ready.port,
    url,
    baseURL: `${url}/v1`,
    exited,
    stderr: () => stderr,
    describe,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    // SIGTERM, then SIGKILL after `graceMs`. Resolves to { code, signal, killed }.
    stop(graceMs = 15_000) {
      if (stopped) return stopped;
      stopped = (async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) return { ...(await exited), killed: false };
        proc.kill('SIGTERM');
        let timer;
        const forced = new Promise((resolve) => {
          timer = setTimeout(() => { proc.kill('SIGKILL'); resolve(true); }, graceMs);
        });
        const killed = await Promise.race([exited.then(() => false), forced]);
        clearTimeout(timer);
        return { ...(await exited), killed };
      })();
      return stopped;
    },
  };
}

// Stops the server and asserts it went quietly: it left on SIGTERM within the grace period with exit
// code 0 (or by the signal itself). A sanitizer report makes the exit code non-zero.
export async function stopAndCheck(server, assert) {
  if (!server) return;
  const { code, signal, killed } = await server.stop();
  assert.ok(!killed, `baichuan serve did not exit within 15 s of SIGTERM\n${server.describe()}`);
  assert.ok(code === 0 || signal === 'SIGTERM' || signal === 'SIGINT',
    `baichuan serve ended with code ${code}, signal ${signal} after SIGTERM\n${server.describe()}`);
}

// Resident memory of a process in bytes, from /proc/PID/status.
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

// Parses Prometheus text into [{ name, labels, value }] (comments skipped).
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?\s*$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    samples.push({ name: m[1], labels: m[2] || '', value: Number(m[3]) });
  }
  return samples;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
