/**
 * VM templating, the experiment of issue 13 item 2 (Kata's `enable_template`; docs/decisions/0016-vm-pool.md):
 * a guest is booted on a shared memory file, paused and its device state saved with QEMU's migration
 * (`x-ignore-shared`: the RAM stays in the file, only device state is written); clones start from it
 * (`-incoming`, the same file mapped private, copy-on-write) and run. Measured here: spawn → a shell that
 * answers on the serial port, cold boot against clone, in the same run.
 *
 * The guest is Corral's kernel and initramfs with `rdinit=/bin/sh` and no share: Corral's /init mounts its
 * 9p share at boot, and QEMU refuses to migrate a guest with a mounted 9p export (checked, QEMU 7.2:
 * "Migration is disabled when VirtFS export path ... is mounted in the guest"), so the mechanism is
 * measured on a booted kernel without the share. Not part of `npm run bench` (not a Corral code path).
 *
 * `npx tsx bench/template.ts [--runs N] [--json]`
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostTscKhz } from '../src/workers/hypervisor/qemu-args.ts';
import { REPO } from '../test/helpers/node.ts';
import { pct } from './timing.ts';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 0) || 3;
const json = args.includes('--json');
const guest = join(REPO, '.corral/guest');
const dir = mkdtempSync(join(tmpdir(), 'corral-template-'));
const memFile = join('/dev/shm', `corral-template-${process.pid}.mem`);
const procs: ChildProcess[] = [];

function qemu(name: string, share: 'on' | 'off', extra: string[] = []): ChildProcess {
  const tsc = hostTscKhz();
  const p = spawn(
    'qemu-system-x86_64',
    [
      ...['-name', `corral-template-${name}`, '-M', 'microvm,pit=on,memory-backend=mem', '-accel', 'tcg'],
      ...['-object', `memory-backend-file,id=mem,size=512M,mem-path=${memFile},share=${share}`, '-m', '512'],
      ...['-smp', '1', '-nodefaults', '-no-user-config', '-nographic', '-no-reboot'],
      ...['-kernel', join(guest, 'vmlinux'), '-initrd', join(guest, 'initramfs.cpio.gz')],
      ...['-append', `console=ttyS0 quiet panic=-1 ${tsc ? `tsc_early_khz=${tsc} ` : ''}rdinit=/bin/sh`],
      ...['-chardev', `socket,id=con,path=${join(dir, `${name}.con`)},server=on,wait=off`, '-serial', 'chardev:con'],
      ...['-chardev', `socket,id=qmp,path=${join(dir, `${name}.qmp`)},server=on,wait=off`],
      ...['-mon', 'chardev=qmp,mode=control', '-device', 'virtio-serial-device', ...extra],
    ],
    { stdio: 'ignore' },
  );
  procs.push(p);
  return p;
}

/** Connect to a unix socket QEMU is about to create (it listens once it has parsed its command line). */
async function socketOf(path: string, until = Date.now() + 30_000): Promise<Socket> {
  for (;;) {
    const s = await new Promise<Socket | undefined>((res) => {
      const c = connect(path, () => res(c)).once('error', () => res(undefined));
    });
    if (s) return s;
    if (Date.now() > until) throw new Error(`no socket ${path}`);
    await new Promise((r) => setTimeout(r, 5)); // QEMU has not created it yet: poll
  }
}

/** A QMP client: one command at a time, events skipped. */
async function qmp(path: string) {
  const s = await socketOf(path);
  let buf = '';
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  s.on('data', (d) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (lines.length === 0) await new Promise<void>((r) => (wake = r));
    return JSON.parse(lines.shift()!) as Record<string, unknown>;
  };
  await next(); // greeting
  const cmd = async (execute: string, a?: unknown): Promise<Record<string, unknown>> => {
    s.write(JSON.stringify({ execute, ...(a ? { arguments: a } : {}) }) + '\n');
    for (;;) {
      const m = await next();
      if ('event' in m) continue;
      if ('error' in m) throw new Error(`${execute}: ${JSON.stringify(m.error)}`);
      return m.return as Record<string, unknown>;
    }
  };
  await cmd('qmp_capabilities');
  return { cmd, close: () => s.destroy() };
}

/** Seconds from t0 until the guest's shell echoes a line typed on its serial port. */
async function shellAnswers(path: string, t0: number): Promise<number> {
  const s = await socketOf(path);
  let out = '';
  s.on('data', (d) => (out += d.toString()));
  const typed = setInterval(() => s.write('echo al""ive\n'), 100); // until the shell reads it
  try {
    while (!out.includes('alive')) {
      if (performance.now() - t0 > 120_000) throw new Error(`no shell on ${path}: ${out.slice(-300)}`);
      await new Promise((r) => s.once('data', r));
    }
    return performance.now() - t0;
  } finally {
    clearInterval(typed);
    s.destroy();
  }
}

const stop = async (p: ChildProcess) => {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
};
const ignoreShared = { capabilities: [{ capability: 'x-ignore-shared', state: true }] };

try {
  const cold: number[] = [];
  const clone: number[] = [];
  let template: ChildProcess | undefined;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const p = qemu(`cold${i}`, 'on');
    cold.push(await shellAnswers(join(dir, `cold${i}.con`), t0));
    if (i < runs - 1) await stop(p);
    else template = p; // the last cold boot becomes the template
  }
  const t = await qmp(join(dir, `cold${runs - 1}.qmp`));
  await t.cmd('migrate-set-capabilities', ignoreShared);
  await t.cmd('stop');
  const state = join(dir, 'state');
  const s0 = performance.now();
  await t.cmd('migrate', { uri: `exec:cat > ${state}` });
  while ((await t.cmd('query-migrate')).status !== 'completed') await new Promise((r) => setTimeout(r, 5));
  const saveMs = performance.now() - s0;
  t.close();
  await stop(template!);
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const p = qemu(`clone${i}`, 'off', ['-incoming', 'defer']);
    const c = await qmp(join(dir, `clone${i}.qmp`));
    await c.cmd('migrate-set-capabilities', ignoreShared);
    await c.cmd('migrate-incoming', { uri: `exec:cat ${state}` });
    while ((await c.cmd('query-migrate')).status !== 'completed') await new Promise((r) => setTimeout(r, 2));
    await c.cmd('cont');
    clone.push(await shellAnswers(join(dir, `clone${i}.con`), t0));
    c.close();
    await stop(p);
  }
  const report = {
    runs,
    coldBootMs: pct(cold, 50),
    cloneMs: pct(clone, 50),
    cloneOverColdBoot: pct(clone, 50) / pct(cold, 50),
    saveMs,
    deviceStateBytes: statSync(state).size,
    cold,
    clone,
  };
  if (json) console.log(JSON.stringify(report));
  else console.log(JSON.stringify(report, null, 2));
} finally {
  for (const p of procs) await stop(p);
  rmSync(dir, { recursive: true, force: true });
  rmSync(memFile, { force: true });
}
