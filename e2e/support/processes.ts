// Starting and stopping the processes of the e2e environment, each one's output going to
// e2e/test-results/NAME.log.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { RESULTS_DIR } from './paths';

export interface Started {
  name: string;
  child: ChildProcess;
  log: string;
  /** The first capture group of the ready pattern. */
  ready: string;
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Spawns `cmd args` and resolves once a line of its stdout or stderr matches `ready`.
 * Rejects (with the log's tail) if the process exits first or `timeoutMs` passes.
 */
export function startProcess(
  name: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  timeoutMs: number,
  onSpawn: (s: Started) => void,
): Promise<Started> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const log = path.join(RESULTS_DIR, `${name}.log`);
  const out = fs.createWriteStream(log);
  out.write(`$ ${cmd} ${args.join(' ')}\n`);
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const started: Started = { name, child, log, ready: '' };
  onSpawn(started);
  return new Promise((resolve, reject) => {
    let done = false;
    let buffered = '';
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(started);
    };
    const scan = (chunk: Buffer) => {
      out.write(chunk);
      if (done) return;
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const m = line.replace(ANSI, '').match(ready);
        if (m) {
          started.ready = m[1] ?? '';
          finish();
          return;
        }
      }
    };
    child.stdout!.on('data', scan);
    child.stderr!.on('data', scan);
    child.on('error', (e) => finish(new Error(`${name}: could not start ${cmd}: ${e.message}`)));
    child.on('exit', (code, signal) => {
      out.write(`\n[e2e] ${name} exited: code=${code} signal=${signal}\n`);
      finish(new Error(`${name} exited (code ${code}, signal ${signal}) before it was ready; ${log} ends with:\n${tail(log)}`));
    });
    const timer = setTimeout(
      () => finish(new Error(`${name} not ready within ${timeoutMs} ms; ${log} ends with:\n${tail(log)}`)),
      timeoutMs,
    );
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM, then waits for the exit (SIGKILL after `graceMs`). Works with a child handle
 * (same process as the setup) or only a pid (read back from the state file).
 */
export async function stopProcess(
  name: string,
  pid: number,
  child: ChildProcess | undefined,
  graceMs = 15_000,
): Promise<void> {
  const exited = () => (child ? child.exitCode !== null || child.signalCode !== null : !alive(pid));
  if (exited()) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (!exited() && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!exited()) {
    console.warn(`[e2e] ${name} (pid ${pid}) still running ${graceMs} ms after SIGTERM; sending SIGKILL`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
