/**
 * Debian's containerd drives Corral through `containerd-shim-corral-v2` (runtime io.containerd.corral.v2),
 * as ctr users do: the task runs in a real QEMU guest behind the agent; stdout, stdin and exit codes round
 * trip; exec, pause/resume, metrics, kill, delete; the events containerd gets, in order. After each test:
 * no shim, no mount, no QEMU, no VMM user.
 */
import { spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RUNTIME_TYPE } from '../../src/shim/launcher.ts';
import { corralContainerd, hex64, IMAGE, status, type CorralContainerd } from '../helpers/corral-containerd.ts';
import { killAllTerminals, terminal } from '../helpers/tmux.ts';
import { waitFor } from '../helpers/wait.ts';

let k: CorralContainerd;
beforeAll(async () => {
  k = await corralContainerd();
});
afterAll(async () => {
  killAllTerminals();
  await k?.stop();
});
afterEach(async () => {
  await k.clean();
});

const ls = () => k.ls();

describe('ctr with the corral runtime', () => {
  it('ctr run --rm: stdout and stdin round trip, the exit code is the container’s; events in order', async () => {
    const events = spawn('ctr', ['--address', k.c.address, 'events']);
    let seen = '';
    events.stdout.on('data', (d) => (seen += d));
    try {
      const r = await k.run(['--rm', IMAGE, 'c1', 'sh', '-c', 'echo hello; cat; exit 3'], 'hi\n');
      expect(r.stdout).toBe('hello\nhi\n');
      expect(r.code).toBe(3);
      const topics = () => [...seen.matchAll(/ (\/tasks\/[a-z-]+) /g)].map((m) => m[1]);
      await waitFor(topics, { until: (t) => t.includes('/tasks/delete'), timeoutMs: 10_000, what: 'TaskDelete' });
      expect(topics()).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
      expect(seen).toMatch(/\/tasks\/exit .*"exit_status":3/);
    } finally {
      events.kill();
    }
  });

  it('a 64-hex id: run -d, task ls RUNNING, exec, pause/resume, metrics, kill, delete, container rm', async () => {
    const id = hex64();
    expect((await k.run(['-d', IMAGE, id, 'sleep', '600'])).code).toBe(0);
    expect(await ls()).toMatch(status(id, 'RUNNING'));
    // The agent holds the task, and it runs in a guest (the guest kernel's command line is Corral's).
    expect(await k.n.call('state', { id })).toMatchObject({
      id,
      status: 'running',
      bundle: expect.stringContaining(id),
    });
    expect((await k.c.ctr(['task', 'exec', '--exec-id', 'k', id, 'cat', '/proc/cmdline'])).stdout).toMatch(/corral\./);
    const e = await k.c.ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo in-exec; exit 5']);
    expect(e.stdout).toBe('in-exec\n');
    expect(e.code).toBe(5);
    expect((await k.c.ctr(['task', 'pause', id])).code).toBe(0);
    expect(await ls()).toMatch(status(id, 'PAUSED'));
    expect((await k.c.ctr(['task', 'resume', id])).code).toBe(0);
    const m = await k.c.ctr(['task', 'metrics', id]);
    expect(m.stderr).toBe('');
    expect(m.stdout).toMatch(/pids\.current\s+\d+/);
    expect((await k.c.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
    await waitFor(ls, { until: (s) => status(id, 'STOPPED').test(s), timeoutMs: 60_000, what: 'STOPPED' });
    expect((await k.c.ctr(['task', 'delete', id])).code).toBe(0);
    expect((await k.c.ctr(['container', 'rm', id])).code).toBe(0);
  });

  it('ctr run -t in a real terminal: a prompt, the size, Ctrl-C, exit code', async () => {
    const c = k.c;
    const ctr = `CONTAINERD_SNAPSHOTTER=${c.snapshotter} ctr --address ${c.address} run --fifo-dir ${c.fifoDir}`;
    const t = terminal(`${ctr} -t --rm --runtime ${RUNTIME_TYPE} ${IMAGE} tty1 sh`, { tag: 'ctr' });
    await t.seen(/^\/ # ?$/m);
    t.keys('stty size; tty', 'Enter');
    await t.seen(/^30 100\n\/dev\/pts\/\d+$/m);
    t.keys('sleep 600', 'Enter');
    await t.seen(/sleep 600\n?$/m);
    t.keys('C-c');
    t.keys('echo rc=$?', 'Enter');
    await t.seen(/^rc=130$/m);
    t.keys('exit 4', 'Enter');
    await t.seen(/^ctr-exit=4$/m);
  });
});
