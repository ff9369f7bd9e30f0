/**
 * Fault injection at every step of create and start, on a real node: the caller gets the original
 * error with its code, and afterwards nothing is left on the host (mounts, QEMU, users, /run/user,
 * sandbox dirs). Worker faults are armed through the worker's test-only `__fault` op
 * (CORRAL_TEST_FAULTS=1): fail, or SIGKILL the worker before the op or after its side effect.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';
import { processesMatching } from '../helpers/leaks.ts';

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
  // A failed create registers no task (Kata), once its rollback is complete.
  await waitFor(async () => (await n.call<{ tasks: unknown[] }>('list', {})).tasks, {
    until: (tasks) => tasks.length === 0,
    timeoutMs: 30_000,
    what: 'no task registered once the rollback is complete',
  });
});

const GUEST = join(REPO, '.corral/guest');
/** A runtime config file: the node's default with some lines replaced. */
function config(name: string, edit: (toml: string) => string): string {
  const p = join(n.configs, `${name}.toml`);
  writeFileSync(p, edit(localRuntimeConfig(GUEST)));
  return p;
}
const sleeper = (name: string, extra: Partial<Parameters<TestNode['bundle']>[1]> = {}) =>
  n.bundle(name, { args: ['sleep', '600'], ...extra });

async function createFails(id: string, body: Record<string, unknown>, code: string, message: RegExp) {
  ids.push(id);
  const e = await n.call('create', { id, ...body }).then(
    () => null,
    (x: unknown) => x,
  );
  expect(e, 'create should fail').not.toBeNull();
  expect(e).toMatchObject({ code });
  expect((e as Error).message).toMatch(message);
}

describe('bad input never leaves anything behind', () => {
  it('bad config (TOML syntax) → InvalidArgument', async () => {
    const cfg = config('bad', () => '[hypervisor.qemu\npath = ');
    await createFails(
      'badcfg',
      { bundle: sleeper('badcfg'), options: { configPath: cfg } },
      'InvalidArgument',
      /bad\.toml/,
    );
  });

  it('config with a missing kernel → the Kata check names it', async () => {
    const cfg = config('nokernel', (t) => t.replace(/kernel = ".*"/, 'kernel = "/nonexistent/vmlinux"'));
    await createFails(
      'nokernel',
      { bundle: sleeper('nokernel'), options: { configPath: cfg } },
      'NotFound',
      /\/nonexistent\/vmlinux/,
    );
  });

  it('config_path annotation outside the allowed config roots → InvalidArgument', async () => {
    const b = sleeper('anno', { annotations: { 'io.katacontainers.config_path': '/etc/passwd' } });
    await createFails('anno', { bundle: b }, 'InvalidArgument', /outside the allowed config directories/);
  });
});

describe('fault at each step of create: the original error, then nothing left', () => {
  it('the 2nd rootfs component fails to mount → the 1st is unmounted, the rootfs dir it made is removed', async () => {
    const b = sleeper('rootfs2', { emptyRootfs: true });
    execFileSync('rmdir', [join(b, 'rootfs')]);
    await createFails(
      'rootfs2',
      {
        bundle: b,
        rootfs: [
          { type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] },
          { type: 'nosuchfs', source: 'none', options: [] },
        ],
      },
      'InvalidArgument',
      /failed to mount rootfs component/,
    );
    expect(existsSync(join(b, 'rootfs'))).toBe(false);
  });

  it('a mount worker killed after mounting, before it answers → the rollback still unmounts', async () => {
    const b = sleeper('mountcrash', { emptyRootfs: true });
    await n.fault('mount', 'mountRootfs', 'crashAfter');
    await createFails(
      'mountcrash',
      { bundle: b, rootfs: [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }] },
      'Unavailable',
      /mount worker died/,
    );
    expect(existsSync(join(b, 'rootfs'))).toBe(true); // the bundle's own dir stays
  });

  it('a mount worker killed before the share bind → Unavailable, rootfs and sandbox dir undone', async () => {
    await n.fault('mount', 'bind', 'crash');
    await createFails(
      'bindcrash',
      { bundle: sleeper('bindcrash'), rootfs: [{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }] },
      'Unavailable',
      /mount worker died/,
    );
  });

  it('rootless setup fails (worker killed after useradd, before answering) → no user, no /run/user/<uid>', async () => {
    const cfg = config('rootless', (t) => t.replace('[hypervisor.qemu]', '[hypervisor.qemu]\nrootless = true'));
    await n.fault('hypervisor', 'createUser', 'crashAfter');
    await createFails(
      'userfail',
      { bundle: sleeper('userfail'), options: { configPath: cfg } },
      'Unavailable',
      /hypervisor worker died/,
    );
  });

  it('QEMU fails to start → its error, nothing running', async () => {
    const cfg = config('badmachine', (t) => t.replace('machine_type = "microvm"', 'machine_type = "nosuchmachine"'));
    await createFails(
      'qemufail',
      { bundle: sleeper('qemufail'), options: { configPath: cfg } },
      'InvalidArgument',
      /nosuchmachine|machine/i,
    );
  });

  it('the guest agent never becomes ready → Timeout at the boot deadline, QEMU killed', async () => {
    const initrd = join(n.dataDir, 'noagent.cpio.gz');
    const root = join(n.dataDir, 'noagent');
    mkdirSync(join(root, 'bin'), { recursive: true });
    execFileSync('cp', ['/bin/busybox', join(root, 'bin/busybox')]);
    writeFileSync(join(root, 'init'), '#!/bin/busybox sh\n/bin/busybox sleep 100000\n', { mode: 0o755 });
    execFileSync('sh', ['-c', `cd ${root} && find . | cpio -o -H newc 2>/dev/null | gzip > ${initrd}`]);
    const cfg = config('noagent', (t) =>
      t.replace(/initrd = ".*"/, `initrd = "${initrd}"`).replace('dial_timeout = 120', 'dial_timeout = 8'),
    );
    await createFails(
      'noagent',
      { bundle: sleeper('noagent'), options: { configPath: cfg } },
      'Timeout',
      /boot|ready|deadline/i,
    );
  });

  it(
    'the hypervisor worker killed after QEMU started, before it answers → ' +
      'the restarted worker adopts the VM and the rollback stops it',
    async () => {
      await n.fault('hypervisor', 'boot', 'crashAfter');
      await createFails('bootcrash', { bundle: sleeper('bootcrash') }, 'Unavailable', /hypervisor worker died/);
    },
  );

  it('start fails → the caller gets the error, wait gives 255, teardown leaves nothing', async () => {
    ids.push('startfail');
    await n.call('create', { id: 'startfail', bundle: sleeper('startfail') });
    await n.fault('hypervisor', 'startProcess', 'fail');
    await expect(n.call('start', { id: 'startfail' })).rejects.toMatchObject({
      code: 'Internal',
      message: 'injected fault: startProcess failed',
    });
    expect(await n.call('wait', { id: 'startfail' })).toMatchObject({ exitStatus: 255 });
    await n.call('delete', { id: 'startfail' });
  });
});

describe('rootless VMM', () => {
  it('runs QEMU as a temporary user and removes the user and /run/user/<uid> on delete', async () => {
    const cfg = config('rootless-ok', (t) => t.replace('[hypervisor.qemu]', '[hypervisor.qemu]\nrootless = true'));
    ids.push('rootless');
    const { pid } = await n.call<{ pid: number }>('create', {
      id: 'rootless',
      bundle: sleeper('rootless'),
      options: { configPath: cfg },
    });
    const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    expect(uid).toBeGreaterThan(0);
    expect(existsSync(`/run/user/${uid}`)).toBe(true);
    expect(processesMatching('-name corral-rootless ')).toEqual([pid]);
    await n.call('start', { id: 'rootless' });
    await n.call('kill', { id: 'rootless', signal: 9 });
    await n.call('wait', { id: 'rootless' });
    await n.call('delete', { id: 'rootless' });
    expect(existsSync(`/run/user/${uid}`)).toBe(false);
  });
});
