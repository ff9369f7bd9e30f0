/**
 * The containerd harness (test/helpers/containerd.ts, oci-image.ts) proven with Debian's runc
 * (io.containerd.runc.v2): a foreground `ctr run` with piped stdin and an exit code, a detached task through
 * ls/exec/kill/delete, a daemon crash and restart that finds its task again, a stop that cleans up a live task,
 * and a CRI-enabled start whose CNI conflist gives an address and whose bridge is gone after stop. After each
 * test the instance has no shim process and no mount left.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, type Containerd } from '../helpers/containerd.ts';
import { mountsUnder, processesMatching } from '../helpers/leaks.ts';
import { buildBusyboxImage, buildPauseImage } from '../helpers/oci-image.ts';
import { waitFor } from '../helpers/wait.ts';

const IMG = 'docker.io/library/busybox-local:latest';
/** Built images, per run of this file (removed after it). */
let CACHE = '';
beforeAll(() => {
  CACHE = mkdtempSync('/tmp/crl-oci-');
});
afterAll(() => rmSync(CACHE, { recursive: true, force: true }));

const NONE = { shims: [], mounts: [] };
const nothingLeft = async (c: Containerd) =>
  expect(
    await waitFor(() => c.leftovers(), {
      until: (l) => !l.shims.length && !l.mounts.length,
      timeoutMs: 5000,
      what: 'no shim and no mount left',
    }).catch(() => c.leftovers()),
  ).toEqual(NONE);
const taskStatus = async (c: Containerd, id: string) =>
  new RegExp(`^${id}\\s+\\d+\\s+(\\w+)`, 'm').exec((await c.ctr(['task', 'ls'])).stdout)?.[1];
/** After stop: nothing of the instance on the host. */
const gone = (c: Containerd) => ({
  dir: existsSync(c.dir),
  mounts: mountsUnder(c.dir),
  processes: processesMatching(c.dir),
});

describe('containerd harness with runc', () => {
  let c: Containerd;
  beforeAll(async () => {
    c = await startContainerd();
    await c.importImage(await buildBusyboxImage(CACHE));
  });
  afterEach(() => nothingLeft(c));
  afterAll(async () => {
    await c?.stop();
    if (c) expect(gone(c)).toEqual({ dir: false, mounts: [], processes: [] });
  });

  it('runs a foreground task: stdin piped in, stdout and the exit code out', async () => {
    expect(['overlayfs', 'native']).toContain(c.snapshotter);
    const r = await c.ctr(['run', '--rm', IMG, 'c1', 'sh', '-c', 'echo hello; cat; exit 3'], { input: 'hi\n' });
    expect(r).toMatchObject({ code: 3, stdout: 'hello\nhi\n' });
    const id = randomBytes(32).toString('hex');
    expect(await c.ctr(['run', '--rm', IMG, id, 'echo', 'ok'])).toMatchObject({ code: 0, stdout: 'ok\n' });
    expect((await c.ctr(['container', 'ls', '-q'])).stdout).toBe('');
  });

  it('drives a detached task: ls, exec, kill, delete, container rm', async () => {
    const cmd = "trap 'exit 0' TERM; sleep 600 & wait";
    expect(await c.ctr(['run', '-d', IMG, 'c2', 'sh', '-c', cmd])).toMatchObject({ code: 0 });
    expect(await taskStatus(c, 'c2')).toBe('RUNNING');
    const e = await c.ctr(['task', 'exec', '--exec-id', 'e1', 'c2', 'sh', '-c', 'echo in-exec; exit 5']);
    expect(e).toMatchObject({ code: 5, stdout: 'in-exec\n' });
    expect(await c.ctr(['task', 'kill', 'c2'])).toMatchObject({ code: 0 });
    await waitFor(() => taskStatus(c, 'c2'), { until: (s) => s === 'STOPPED', what: 'c2 STOPPED' });
    expect(await c.ctr(['task', 'delete', 'c2'])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', 'c2'])).toMatchObject({ code: 0 });
    expect((await c.ctr(['container', 'ls', '-q'])).stdout).toBe('');
  });

  it('survives a daemon crash: the shim lives on and the restarted daemon finds its task', async () => {
    expect(await c.ctr(['run', '-d', IMG, 'c3', 'sleep', '600'])).toMatchObject({ code: 0 });
    const before = c.pid;
    await c.kill();
    expect(c.leftovers().shims).toHaveLength(1);
    await c.restart();
    expect(c.pid).not.toBe(before);
    expect(await taskStatus(c, 'c3')).toBe('RUNNING');
    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', 'c3'])).toMatchObject({ code: 0 });
    await waitFor(() => taskStatus(c, 'c3'), { until: (s) => s === 'STOPPED', what: 'c3 STOPPED' });
    expect(await c.ctr(['task', 'delete', 'c3'])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', 'c3'])).toMatchObject({ code: 0 });
  });

  it('stop() kills a live task with its shim and unmounts its rootfs', async () => {
    const d = await startContainerd();
    await d.importImage(await buildBusyboxImage(CACHE));
    expect(await d.ctr(['run', '-d', IMG, 'c4', 'sleep', '600'])).toMatchObject({ code: 0 });
    const pid = Number(/^c4\s+(\d+)/m.exec((await d.ctr(['task', 'ls'])).stdout)?.[1]);
    expect(d.leftovers().shims).toHaveLength(1);
    expect(d.leftovers().mounts.length).toBeGreaterThan(0);
    await d.stop();
    expect(gone(d)).toEqual({ dir: false, mounts: [], processes: [] });
    expect(existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))).toBe(false);
  });

  it('starts with the CRI plugin and a working CNI conflist; stop removes the bridge', async () => {
    const pause = 'registry.k8s.io/pause:3.6';
    const d = await startContainerd({ cri: true, sandboxImage: pause });
    try {
      await d.importImage(await buildPauseImage(CACHE, { name: pause }));
      expect((await d.ctr(['plugins', 'ls'])).stdout).toMatch(/^io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok\s*$/m);
      expect(d.criAddress).toBe(d.address);
      // What CRI would do for a pod: the conflist's bridge plugin, on a netns held by a process (no netns mount).
      const conf = JSON.parse(readFileSync(join(d.dir, 'cni/10-crl.conflist'), 'utf8')) as CniList;
      const holder = spawn('unshare', ['--net', '/bin/busybox', 'sleep', '600'], { stdio: 'ignore' });
      const exited = new Promise((r) => holder.once('exit', r));
      try {
        const netns = `/proc/${holder.pid}/ns/net`;
        await waitFor(() => readlinkSync(netns) !== readlinkSync('/proc/self/ns/net'), {
          ignoreErrors: true,
          what: 'unshare to enter its netns',
        });
        const out = execFileSync('/usr/lib/cni/bridge', {
          input: JSON.stringify({ cniVersion: conf.cniVersion, name: conf.name, ...conf.plugins[0] }),
          env: { ...process.env, ...cniEnv(netns) },
          encoding: 'utf8',
        });
        expect((JSON.parse(out) as { ips: { address: string }[] }).ips[0]?.address).toMatch(/^10\.200\.\d+\.\d+\/24$/);
        expect(existsSync(`/sys/class/net/${d.bridge}`)).toBe(true);
      } finally {
        holder.kill('SIGKILL');
        await exited;
      }
    } finally {
      await d.stop();
    }
    expect(existsSync(`/sys/class/net/${d.bridge}`)).toBe(false);
    expect(gone(d)).toEqual({ dir: false, mounts: [], processes: [] });
  });
});

interface CniList {
  cniVersion: string;
  name: string;
  plugins: Record<string, unknown>[];
}
const cniEnv = (netns: string) => ({
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: `crl-t${process.pid}`,
  CNI_NETNS: netns,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/usr/lib/cni',
});
