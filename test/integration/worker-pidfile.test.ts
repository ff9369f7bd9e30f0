/**
 * One worker of a kind per run dir (src/workers/pidfile.ts): a second one refuses to start, naming the first; a
 * stale pidfile is taken over; and a restarted agent adopts a worker by its pidfile even when the worker cannot
 * answer over NATS. That last case used to start a second worker beside the live one (seen in CI: fleet-cluster's
 * restarted agent left its predecessor's three workers behind).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorralError } from '../../src/errors.ts';
import { WORKER_KINDS } from '../../src/domain/ops.ts';
import { claimWorkerPidfile, liveWorker, workerPidfile } from '../../src/workers/pidfile.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { REPO } from '../helpers/node.ts';
import { agentDir, removeAgentDir, spawnAgent } from '../helpers/agent-process.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNats;
const { dir, conf } = agentDir('pidfile');
const runDir = join(dir, 'run');
beforeAll(async () => {
  n = await natsServer();
});
afterAll(async () => {
  await n.cleanup();
  expect(removeAgentDir(dir)).toEqual([]);
});

/** A child's stderr, kept, and its exit. */
function watched(p: ChildProcess) {
  const o = { text: '', exited: new Promise<number | null>((r) => p.once('exit', (code) => r(code))) };
  p.stderr!.on('data', (b: Buffer) => (o.text += b.toString()));
  return o;
}

describe('the pidfile', () => {
  const d = join(dir, 'unit');
  it('names its live holder, refuses another, and goes with its release', () => {
    const release = claimWorkerPidfile(d, 'mount');
    expect(liveWorker(d, 'mount')).toBe(process.pid);
    const other = process.pid + 1;
    expect(() => claimWorkerPidfile(d, 'mount', other)).toThrow(CorralError);
    expect(() => claimWorkerPidfile(d, 'mount', other)).toThrow(`a mount worker runs already for this run dir`);
    release();
    expect(existsSync(workerPidfile(d, 'mount'))).toBe(false);
  });

  it('is taken over when its process is gone, or its pid is another process now', () => {
    const dead = spawnSync('true').pid;
    for (const stale of [`${dead} 1\n`, `${process.pid} 1\n`, 'garbage\n', '']) {
      writeFileSync(workerPidfile(d, 'network'), stale);
      expect(liveWorker(d, 'network'), JSON.stringify(stale)).toBeUndefined();
      const release = claimWorkerPidfile(d, 'network');
      expect(liveWorker(d, 'network'), JSON.stringify(stale)).toBe(process.pid);
      release();
    }
  });
});

it('a second worker of a kind for one run dir exits with an error naming the first', async () => {
  const args = [
    join(REPO, 'bin/corral.mjs'),
    'worker',
    'mount',
    ...['--node', `pf${process.pid}`, '--nats', n.url, '--data-dir', dir, '--run-dir', runDir],
    ...['--bundle-root', join(dir, 'bundles')],
  ];
  const start = () => spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const first = start();
  const a = watched(first);
  await waitFor(() => liveWorker(runDir, 'mount'), { until: (p) => p === first.pid, timeoutMs: 30_000, what: 'pid' });
  const b = watched(start());
  expect(await b.exited).toBe(1);
  expect(b.text.trim()).toBe(
    `corral: AlreadyExists: a mount worker runs already for this run dir: pid ${first.pid} ` +
      `(${workerPidfile(runDir, 'mount')})`,
  );
  expect(liveWorker(runDir, 'mount')).toBe(first.pid); // the refused one left the holder's file alone
  first.kill('SIGTERM');
  expect(await a.exited).toBe(0);
  expect(existsSync(workerPidfile(runDir, 'mount'))).toBe(false);
}, 60_000);

it('a restarted agent adopts a stopped worker (it cannot answer) by its pidfile, and starts no other', async () => {
  const node = `pa${process.pid}`;
  const agent = () =>
    spawnAgent({
      node,
      nats: n.url,
      dir,
      conf,
      stdio: ['ignore', 'ignore', 'pipe'],
      logLevel: 'info',
    });
  const workers = (not: number) => processesMatching(`--data-dir ${dir}`).filter((pid) => pid !== not);
  const first = agent();
  const a = watched(first);
  await waitFor(() => a.text.includes('corral agent ready'), { timeoutMs: 60_000, what: 'the first agent ready' });
  const pids = WORKER_KINDS.map((k) => liveWorker(runDir, k));
  expect(pids.every((p) => p !== undefined)).toBe(true);
  first.kill('SIGKILL');
  await a.exited;
  const mount = liveWorker(runDir, 'mount')!;
  process.kill(mount, 'SIGSTOP'); // alive, and silent on NATS: its pings time out
  const second = agent();
  const b = watched(second);
  const adopted = () =>
    b.text
      .split('\n')
      .filter((l) => l.includes('adopting a running worker'))
      .map((l) => {
        const { worker, pid, by } = JSON.parse(l) as { worker: string; pid: number; by: string };
        return { worker, pid, by };
      });
  await waitFor(adopted, {
    until: (l) => l.some((x) => x.worker === 'mount'),
    timeoutMs: 30_000,
    what: 'the stopped mount worker adopted',
  });
  process.kill(mount, 'SIGCONT');
  await waitFor(() => b.text.includes('corral agent ready'), { timeoutMs: 60_000, what: 'the second agent ready' });
  expect(adopted().sort((x, y) => (x.worker < y.worker ? -1 : 1))).toEqual(
    WORKER_KINDS.map((k, i) => ({ worker: k, pid: pids[i], by: 'pidfile' })).sort((x, y) =>
      x.worker < y.worker ? -1 : 1,
    ),
  );
  expect(workers(second.pid!).sort()).toEqual([...pids].sort());
  second.kill('SIGTERM');
  expect(await b.exited).toBe(0);
  expect(workers(-1)).toEqual([]);
}, 120_000);
