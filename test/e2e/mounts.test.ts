/**
 * config.json bind mounts on a real node (real mount worker, real QEMU sandbox): the host side of each
 * bind is mounted in the sandbox's share (read-only where `ro`), and is undone by delete and by a failed
 * create's rollback, leaving the sources intact. (That the guest mounts them is the guest agent v3's
 * test: not here.)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testNode, type TestNode } from '../helpers/node.ts';
import { mountsUnder } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode({ faults: true });
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
  await waitFor(async () => (await n.call<{ tasks: unknown[] }>('list', {})).tasks, {
    until: (tasks) => tasks.length === 0,
    timeoutMs: 30_000,
    what: 'no task left registered',
  });
});

/** The per-mount options of mount point `mp` (mountinfo field 6), e.g. `ro,relatime`. */
function mountOptions(mp: string): string[] | undefined {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const line = lines.filter((l) => l.split(' ')[4] === mp).at(-1);
  return line?.split(' ')[5]?.split(',');
}

/** Host volumes under the node's bundle root (the only place bind sources may come from). */
function volumes(name: string) {
  const root = join(n.bundles, `vol-${name}`);
  const ro = join(root, 'ro');
  const rw = join(root, 'rw');
  mkdirSync(ro, { recursive: true });
  mkdirSync(rw, { recursive: true });
  writeFileSync(join(ro, 'keep'), 'ro data');
  writeFileSync(join(root, 'file.conf'), 'conf');
  return {
    ro,
    rw,
    file: join(root, 'file.conf'),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data/ro', type: 'bind', source: ro, options: ['rbind', 'ro'] },
      { destination: '/data/rw', type: 'bind', source: rw, options: ['rbind', 'rw'] },
      { destination: '/etc/app.conf', type: 'bind', source: join(root, 'file.conf'), options: ['bind', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
    ],
  };
}

const share = (sid: string, cid: string) => join(n.dataDir, 'run/sandboxes', sid, 'shared', cid, 'mounts');
const sleeper = (name: string, mounts: NonNullable<Parameters<TestNode['bundle']>[1]['mounts']>, more = {}) =>
  n.bundle(name, { args: ['sleep', '600'], mounts, ...more });

describe('config.json bind mounts on the host', () => {
  it('are bound into the share (ro read-only, rw writable through to the source), and delete undoes them', async () => {
    const v = volumes('life');
    ids.push('mnt-life');
    await n.call('create', { id: 'mnt-life', bundle: sleeper('mnt-life', v.mounts) });
    const dir = share('mnt-life', 'mnt-life');
    const binds = [join(dir, '1-ro'), join(dir, '2-rw'), join(dir, '3-file.conf')];
    expect(mountsUnder(dir)).toEqual(binds);
    expect(mountOptions(binds[0]!)).toContain('ro');
    expect(mountOptions(binds[1]!)).toContain('rw');
    expect(mountOptions(binds[2]!)).toContain('ro');
    expect(readFileSync(join(binds[0]!, 'keep'), 'utf8')).toBe('ro data');
    expect(() => writeFileSync(join(binds[0]!, 'new'), 'x')).toThrow(/EROFS/);
    writeFileSync(join(binds[1]!, 'written'), 'through the share');
    expect(readFileSync(join(v.rw, 'written'), 'utf8')).toBe('through the share');
    expect(readFileSync(binds[2]!, 'utf8')).toBe('conf');

    await n.call('start', { id: 'mnt-life' });
    await n.call('kill', { id: 'mnt-life', signal: 9 });
    expect(await n.call('wait', { id: 'mnt-life' })).toMatchObject({ exitStatus: 137 });
    await n.call('delete', { id: 'mnt-life' });
    await n.expectNothingLeft(ids);
    // The sources are untouched.
    expect(readFileSync(join(v.ro, 'keep'), 'utf8')).toBe('ro data');
    expect(readFileSync(join(v.rw, 'written'), 'utf8')).toBe('through the share');
    expect(readFileSync(v.file, 'utf8')).toBe('conf');
  });

  it('a create that fails after the binds (boot fails) rolls them back; the sources stay', async () => {
    const v = volumes('rollback');
    ids.push('mnt-rb');
    await n.fault('hypervisor', 'boot', 'fail');
    await expect(n.call('create', { id: 'mnt-rb', bundle: sleeper('mnt-rb', v.mounts) })).rejects.toMatchObject({
      code: 'Internal',
      message: 'injected fault: boot failed',
    });
    await n.expectNothingLeft(ids);
    expect(readFileSync(join(v.ro, 'keep'), 'utf8')).toBe('ro data');
    expect(readFileSync(v.file, 'utf8')).toBe('conf');
  });

  it('a missing bind source is NotFound before anything is done', async () => {
    ids.push('mnt-missing');
    const missing = join(n.bundles, 'vol-none/nothing');
    await expect(
      n.call('create', {
        id: 'mnt-missing',
        bundle: sleeper('mnt-missing', [{ destination: '/d', type: 'bind', source: missing, options: ['bind'] }]),
      }),
    ).rejects.toMatchObject({ code: 'NotFound', message: expect.stringContaining(`bind source ${missing}`) });
    expect(existsSync(join(n.dataDir, 'run/sandboxes/mnt-missing'))).toBe(false);
  });

  it("a pod container's binds go into its sandbox's share and leave with the container", async () => {
    const v = volumes('pod');
    ids.push('mnt-pod', 'mnt-pod-c');
    const sb = n.bundle('mnt-pod', {
      args: ['sleep', '600'],
      annotations: { 'io.kubernetes.cri.container-type': 'sandbox' },
    });
    await n.call('create', { id: 'mnt-pod', bundle: sb });
    await n.call('start', { id: 'mnt-pod' });
    const c = sleeper('mnt-pod-c', v.mounts, {
      annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'mnt-pod' },
    });
    await n.call('create', { id: 'mnt-pod-c', bundle: c });
    const dir = share('mnt-pod', 'mnt-pod-c');
    expect(mountsUnder(dir)).toEqual([join(dir, '1-ro'), join(dir, '2-rw'), join(dir, '3-file.conf')]);
    await n.call('start', { id: 'mnt-pod-c' });
    await n.call('kill', { id: 'mnt-pod-c', signal: 9 });
    await n.call('wait', { id: 'mnt-pod-c' });
    await n.call('delete', { id: 'mnt-pod-c' });
    await waitFor(() => mountsUnder(dir), { until: (m) => m.length === 0, timeoutMs: 30_000, what: 'binds gone' });
    expect(mountsUnder(join(n.dataDir, 'run/sandboxes/mnt-pod/shared/mnt-pod'))).toEqual([
      join(n.dataDir, 'run/sandboxes/mnt-pod/shared/mnt-pod/rootfs'),
    ]);
    await n.call('kill', { id: 'mnt-pod', signal: 9 });
    await n.call('wait', { id: 'mnt-pod' });
    await n.call('delete', { id: 'mnt-pod' });
  });
});
