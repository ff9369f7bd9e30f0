/**
 * Names derived from task ids never cap an id's length (issue 8, item 1): VM sockets are named by a
 * short hash of the id, QEMU's `-name` keeps the full id (so a scan maps it back), and a run dir too
 * long for the sockets under it is refused when the agent, a worker or `corral up` starts, before any
 * side effect.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkRunDir, paths } from '../../src/agent/settings.ts';
import type { BootSpec } from '../../src/domain/ops.ts';
import {
  SUN_PATH_MAX,
  parseQemuCmdline,
  qemuArgs,
  shortId,
  validateBootSpec,
  vmPaths,
  vmSocketBytes,
} from '../../src/workers/hypervisor/qemu-args.ts';

const REPO = new URL('../..', import.meta.url).pathname;
const hex64 = 'ab'.repeat(32);
const id128 = `A${'x'.repeat(60)}.y_z-${'0123456789'.repeat(6)}`.padEnd(128, 'q');

const spec = (sandboxId: string, runDir: string): BootSpec => ({
  sandboxId,
  vcpus: 1,
  memoryMiB: 128,
  kernel: '/k',
  initrd: '/i',
  kernelParams: '',
  machineType: 'microvm',
  accel: 'kvm',
  sharedDir: '/s',
  msize9p: 8192,
  runDir,
});

describe('VM file names', () => {
  it('sockets are named by a 16-hex hash of the id, whatever its length; logs carry the full id', () => {
    expect(id128).toHaveLength(128);
    const dir = paths.vmDir({ runDir: '/run/corral' });
    for (const id of ['ab', hex64, id128]) {
      const p = vmPaths(dir, id);
      expect(p.qmp).toBe(`/run/corral/vm/corral-${shortId(id)}.qmp`);
      expect(p.agent).toBe(`/run/corral/vm/corral-${shortId(id)}.agent`);
      expect(p.console).toBe(`/run/corral/vm/corral-${id}.console.log`);
      expect(shortId(id)).toMatch(/^[0-9a-f]{16}$/);
      expect(Buffer.byteLength(p.agent)).toBeLessThanOrEqual(SUN_PATH_MAX);
      expect(() => validateBootSpec(spec(id, dir))).not.toThrow();
    }
    expect(shortId(hex64)).not.toBe(shortId(id128));
    expect(vmSocketBytes(dir)).toBe(Buffer.byteLength(vmPaths(dir, id128).agent));
  });

  it("QEMU's -name carries the full 128-character id and parseQemuCmdline reads it back (adoption)", () => {
    const s = spec(id128, '/run/corral/vm');
    const p = vmPaths(s.runDir, id128);
    const argv = qemuArgs(s, { accel: 'kvm', paths: p });
    expect(argv[argv.indexOf('-name') + 1]).toBe(`corral-${id128}`);
    expect(parseQemuCmdline(argv)).toEqual({
      sandboxId: id128,
      accel: 'kvm',
      qmp: p.qmp,
      agent: p.agent,
      console: p.console,
    });
  });
});

describe('a run dir too long for the VM sockets', () => {
  const fixed = vmSocketBytes(paths.vmDir({ runDir: '' })); // the sockets' bytes beyond the run dir
  const max = SUN_PATH_MAX - fixed;

  it('is refused with InvalidArgument naming the run dir and the longest that fits', () => {
    const fits = '/' + 'r'.repeat(max - 1);
    const long = fits + 'r';
    expect(() => checkRunDir('/run/corral')).not.toThrow();
    expect(() => checkRunDir(fits)).not.toThrow();
    expect(() => checkRunDir(long)).toThrowError(
      expect.objectContaining({
        code: 'InvalidArgument',
        message: expect.stringMatching(
          new RegExp(`^run dir ${long} \\(--run-dir / CORRAL_RUN_DIR\\) is too long: .* at most ${max} bytes$`),
        ),
      }),
    );
  });

  it('`corral agent` refuses it before any side effect: one line, exit 2, no stack, nothing created', () => {
    const runDir = `/tmp/corral-longrun-${process.pid}/${'d'.repeat(max)}`;
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'agent', '--run-dir', runDir, '--node', 'n1'],
      // An unreachable NATS: the refusal must come first (a connection attempt would answer Unavailable).
      { cwd: REPO, encoding: 'utf8', env: { ...process.env, NATS_URL: 'nats://127.0.0.1:1', CORRAL_DEBUG: '1' } },
    );
    expect(r.stderr.trim()).toBe(
      `corral: InvalidArgument: run dir ${runDir} (--run-dir / CORRAL_RUN_DIR) is too long: a VM socket under it ` +
        `(${runDir}/vm/corral-<hash>.agent) would be ${Buffer.byteLength(runDir) + fixed} bytes, over the ` +
        `${SUN_PATH_MAX} a unix socket path allows; choose a run dir of at most ${max} bytes`,
    );
    expect(r.status).toBe(2);
    expect(existsSync(`/tmp/corral-longrun-${process.pid}`)).toBe(false);
  });
});
