/**
 * Debian's containerd drives Corral through `containerd-shim-corral-v2` (runtime io.containerd.corral.v2),
 * as ctr users do: the task runs in a real QEMU guest behind the agent; stdout, stdin and exit codes round
 * trip; exec, pause/resume, metrics, kill, delete. After each test: no shim, no mount, no QEMU, no VMM user.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RUNTIME_TYPE, writeLauncher } from '../../src/shim/launcher.ts';
import { startContainerd, type Containerd } from '../helpers/containerd.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { buildBusyboxImage } from '../helpers/oci-image.ts';
import { waitFor } from '../helpers/wait.ts';

const IMAGE = 'docker.io/library/busybox-local:latest';
let c: Containerd;
let n: TestNode;
let shimDir: string;
beforeAll(async () => {
  shimDir = mkdtempSync('/tmp/crl-shim-bin-');
  c = await startContainerd({ pathPrefix: [shimDir] });
  n = await testNode({ bundleRoots: [c.state] });
  writeLauncher(shimDir, { env: { CORRAL_NATS_URL: n.natsUrl, CORRAL_NODE: n.node, CORRAL_LOG_LEVEL: 'debug' } });
  const img = await buildBusyboxImage(join(c.dir, 'images'));
  expect((await c.importImage(img)).code).toBe(0);
});
afterAll(async () => {
  await c?.stop();
  await n?.cleanup();
  rmSync(shimDir, { recursive: true, force: true });
});
afterEach(async () => {
  await waitFor(() => c.leftovers(), {
    until: (l) => l.shims.length === 0 && l.mounts.length === 0,
    timeoutMs: 30_000,
    what: 'no shim and no mount left by containerd',
  }).catch(() => undefined);
  expect(c.leftovers()).toEqual({ shims: [], mounts: [] });
  await n.expectNothingLeft();
});

const hex64 = () => randomBytes(32).toString('hex');
const run = (args: string[], input?: string) =>
  c.ctr(['run', '--runtime', RUNTIME_TYPE, ...args], { input, timeoutMs: 120_000 });

describe('ctr with the corral runtime', () => {
  it('ctr run --rm: stdout and stdin round trip, the exit code is the container’s', async () => {
    const r = await run(['--rm', IMAGE, 'c1', 'sh', '-c', 'echo hello; cat; exit 3'], 'hi\n');
    expect(r.stdout.replace(/\r/g, '')).toBe('hello\nhi\n');
    expect(r.code).toBe(3);
  });

  it('a 64-hex id: run -d, task ls RUNNING, exec, pause/resume, metrics, kill, delete, container rm', async () => {
    const id = hex64();
    expect((await run(['-d', IMAGE, id, 'sleep', '600'])).code).toBe(0);
    expect((await c.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
    // The agent holds the task, and it runs in a guest (the guest kernel's command line is Corral's).
    expect(await n.call('state', { id })).toMatchObject({ id, status: 'running', bundle: expect.stringContaining(id) });
    expect((await c.ctr(['task', 'exec', '--exec-id', 'k', id, 'cat', '/proc/cmdline'])).stdout).toMatch(/corral\./);
    const e = await c.ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo in-exec; exit 5']);
    expect(e.stdout).toBe('in-exec\n');
    expect(e.code).toBe(5);
    expect((await c.ctr(['task', 'pause', id])).code).toBe(0);
    expect((await c.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`${id}\\s+\\d+\\s+PAUSED`));
    expect((await c.ctr(['task', 'resume', id])).code).toBe(0);
    const m = await c.ctr(['task', 'metrics', id]);
    expect(m.stderr).toBe('');
    expect(m.stdout).toMatch(/pids\.current\s+\d+/);
    expect((await c.ctr(['task', 'kill', '-s', 'SIGKILL', id])).code).toBe(0);
    await waitFor(() => c.ctr(['task', 'ls']), {
      until: (r) => new RegExp(`${id}\\s+\\d+\\s+STOPPED`).test(r.stdout),
      timeoutMs: 60_000,
      what: 'the task to be STOPPED',
    });
    expect((await c.ctr(['task', 'delete', id])).code).toBe(0);
    expect((await c.ctr(['container', 'rm', id])).code).toBe(0);
  });
});
