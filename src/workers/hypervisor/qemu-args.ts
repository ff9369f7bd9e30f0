/** Pure pieces of a QEMU launch: spec validation, file paths, the command line, host probes. */
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { err } from '../../errors.ts';
import type { BootSpec, VmmUser } from '../../domain/ops.ts';
import { netArgs, netKernelParams, validateNetwork } from './qemu-net.ts';

/** The `-name` marker every Corral VM carries; `scanHost` and leak checks look for it. */
export const NAME_PREFIX = 'corral-';
/** A sandbox's id, or a pool VM's (`_pool-…`, domain/pool.ts: no container id starts with `_`). */
const ID_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
/** Longest unix socket path (`sun_path` is 108 bytes with its NUL). */
export const SUN_PATH_MAX = 107;

export interface VmPaths {
  qmp: string;
  agent: string;
  console: string;
  stderr: string;
  /** virtio-fs only: virtiofsd's socket and log (optional: registries written before virtio-fs lack them). */
  vfs?: string;
  daemonLog?: string;
}

/**
 * A fixed-length stand-in for a sandbox id where a name must stay short (unix socket paths): the first 16
 * hex digits of its sha256. The full id stays in QEMU's `-name` and in the log file names.
 */
export const shortId = (sandboxId: string): string => createHash('sha256').update(sandboxId).digest('hex').slice(0, 16);

/**
 * Per-VM files in the run dir; several sandboxes may share one run dir. The sockets are named by
 * `shortId`, so their length does not depend on the id's (ids are up to 128 characters).
 */
export const vmPaths = (runDir: string, sandboxId: string): Required<VmPaths> => ({
  qmp: join(runDir, `${NAME_PREFIX}${shortId(sandboxId)}.qmp`),
  agent: join(runDir, `${NAME_PREFIX}${shortId(sandboxId)}.agent`),
  console: join(runDir, `${NAME_PREFIX}${sandboxId}.console.log`),
  stderr: join(runDir, `${NAME_PREFIX}${sandboxId}.stderr.log`),
  vfs: join(runDir, `${NAME_PREFIX}${shortId(sandboxId)}.vfs`),
  daemonLog: join(runDir, `${NAME_PREFIX}${sandboxId}.virtiofsd.log`),
});

/** The longest socket path (in bytes) of any VM whose files live in `runDir`. */
export function vmSocketBytes(runDir: string): number {
  const p = vmPaths(runDir, 'x');
  return Math.max(Buffer.byteLength(p.qmp), Buffer.byteLength(p.agent), Buffer.byteLength(p.vfs));
}

/** Machine families: microvm has virtio-mmio devices only, q35/pc have PCI. */
export function machineFamily(machineType: string): 'mmio' | 'pci' {
  const base = machineType.split(',')[0] ?? '';
  if (base === 'microvm') return 'mmio';
  if (base === 'q35' || base === 'pc' || /^pc-(q35|i440fx)-/.test(base)) return 'pci';
  throw err.invalid(`machineType ${JSON.stringify(machineType)}: want microvm, q35 or pc`);
}

/** Throws InvalidArgument naming the first bad field. */
export function validateBootSpec(s: BootSpec): void {
  if (!ID_RE.test(s.sandboxId))
    throw err.invalid(`sandboxId ${JSON.stringify(s.sandboxId)}: want [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  if (!Number.isInteger(s.vcpus) || s.vcpus < 1 || s.vcpus > 255)
    throw err.invalid(`vcpus ${s.vcpus}: want an integer in 1..255`);
  if (!Number.isInteger(s.memoryMiB) || s.memoryMiB < 64)
    throw err.invalid(`memoryMiB ${s.memoryMiB}: want an integer >= 64`);
  if (!Number.isInteger(s.msize9p) || s.msize9p < 4096)
    throw err.invalid(`msize9p ${s.msize9p}: want an integer >= 4096`);
  if (!['auto', 'kvm', 'tcg'].includes(s.accel))
    throw err.invalid(`accel ${JSON.stringify(s.accel)}: want auto, kvm or tcg`);
  for (const k of ['kernel', 'initrd', 'sharedDir', 'runDir'] as const) {
    if (!s[k]?.startsWith('/')) throw err.invalid(`${k} ${JSON.stringify(s[k])}: want an absolute path`);
  }
  machineFamily(s.machineType);
  if (s.network) validateNetwork(s.network);
  const q = s.virtioFs?.queueSize ?? 0;
  if (!Number.isInteger(q) || q < 0 || q > 1024 || (q & (q - 1)) !== 0)
    throw err.invalid(`virtioFs.queueSize ${q}: want 0 (QEMU's default) or a power of 2 up to 1024`);
  if (vmSocketBytes(s.runDir) > SUN_PATH_MAX)
    throw err.invalid(
      `runDir ${s.runDir}: socket path ${vmPaths(s.runDir, s.sandboxId).agent} is longer than ${SUN_PATH_MAX} bytes`,
    );
}

/** QEMU option values escape commas by doubling them. */
const esc = (v: string): string => v.replace(/,/g, ',,');

export interface ArgOptions {
  accel: 'kvm' | 'tcg';
  paths: VmPaths;
  /** Guest TSC in kHz for `tsc_early_khz` (TCG: without it the kernel may hang calibrating). */
  tscKhz?: number;
  /** Extra QEMU arguments (benchmarks, diagnostics). */
  extra?: string[];
}

/** The full `qemu-system-x86_64` argument list for a spec. */
export function qemuArgs(s: BootSpec, o: ArgOptions): string[] {
  const mmio = machineFamily(s.machineType) === 'mmio';
  const pit = mmio && !/(^|,)pit=/.test(s.machineType) ? `${s.machineType},pit=on` : s.machineType;
  // virtio-fs: guest RAM the daemon can map (a shared memfd backend).
  const machine = s.virtioFs ? `${pit},memory-backend=mem` : pit;
  const kernelParams = [
    'console=ttyS0 quiet panic=-1',
    o.accel === 'tcg' && o.tscKhz ? `tsc_early_khz=${o.tscKhz}` : '',
    s.virtioFs ? 'corral.fs=virtiofs' : `corral.msize=${s.msize9p}`,
    netKernelParams(s.network),
    s.kernelParams,
  ]
    .filter(Boolean)
    .join(' ');
  const dev = (name: string) => `${name}-${mmio ? 'device' : 'pci'}`;
  return [
    '-name',
    `${NAME_PREFIX}${s.sandboxId}`,
    '-M',
    machine,
    '-accel',
    o.accel,
    ...(o.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m',
    String(s.memoryMiB),
    '-smp',
    String(s.vcpus),
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-kernel',
    s.kernel,
    '-initrd',
    s.initrd,
    '-append',
    kernelParams,
    '-chardev',
    `file,id=con,path=${esc(o.paths.console)}`,
    '-serial',
    'chardev:con',
    '-chardev',
    `socket,id=qmp,path=${esc(o.paths.qmp)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    `socket,id=agent,path=${esc(o.paths.agent)},server=on,wait=off`,
    '-device',
    dev('virtio-serial'),
    '-device',
    'virtserialport,chardev=agent,name=corral.agent',
    ...(s.virtioFs ? virtioFsArgs(s, o.paths, mmio) : ninePArgs(s, dev)),
    ...netArgs(s.network, mmio, !!s.user),
    ...(o.extra ?? []),
  ];
}

const ninePArgs = (s: BootSpec, dev: (name: string) => string): string[] => [
  '-fsdev',
  `local,id=fs0,path=${esc(s.sharedDir)},security_model=${s.user ? 'none' : 'passthrough'},multidevs=remap`,
  '-device',
  `${dev('virtio-9p')},fsdev=fs0,mount_tag=corral`,
];

/** vhost-user-fs on virtiofsd's socket; libvhost-user refuses legacy virtio, which microvm's mmio defaults to. */
function virtioFsArgs(s: BootSpec, p: VmPaths, mmio: boolean): string[] {
  const queue = s.virtioFs?.queueSize ? `,queue-size=${s.virtioFs.queueSize}` : '';
  return [
    '-object',
    `memory-backend-memfd,id=mem,size=${s.memoryMiB}M,share=on`,
    ...(mmio ? ['-global', 'virtio-mmio.force-legacy=false'] : []),
    '-chardev',
    `socket,id=vfs,path=${esc(p.vfs ?? '')}`,
    '-device',
    `vhost-user-fs-${mmio ? 'device' : 'pci'},chardev=vfs,tag=corral${queue}`,
  ];
}

/** What a re-attaching worker needs from a running Corral QEMU's command line (the inverse of `qemuArgs`). */
export interface QemuCmdline {
  sandboxId: string;
  accel: 'kvm' | 'tcg';
  qmp: string;
  agent: string;
  console?: string;
  /** virtio-fs: virtiofsd's socket. */
  vfs?: string;
}

/** Split a QEMU option value at single commas (`,,` is an escaped comma). */
export function splitOpts(v: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < v.length; i++) {
    if (v[i] !== ',') cur += v[i];
    else if (v[i + 1] === ',') {
      cur += ',';
      i++;
    } else {
      out.push(cur);
      cur = '';
    }
  }
  out.push(cur);
  return out;
}

/** Parse a Corral QEMU's argv (from /proc/<pid>/cmdline): null unless it has the marker and both sockets. */
export function parseQemuCmdline(argv: string[]): QemuCmdline | null {
  const values = (flag: string) => argv.flatMap((a, i) => (a === flag && i + 1 < argv.length ? [argv[i + 1]!] : []));
  const name = values('-name')[0];
  if (!name?.startsWith(NAME_PREFIX)) return null;
  const chardevs = new Map<string, Map<string, string>>();
  for (const v of values('-chardev')) {
    const kv = new Map<string, string>();
    for (const o of splitOpts(v).slice(1)) {
      const eq = o.indexOf('=');
      if (eq > 0) kv.set(o.slice(0, eq), o.slice(eq + 1));
    }
    const id = kv.get('id');
    if (id) chardevs.set(id, kv);
  }
  const qmp = chardevs.get('qmp')?.get('path');
  const agent = chardevs.get('agent')?.get('path');
  if (!qmp?.startsWith('/') || !agent?.startsWith('/')) return null;
  const console = chardevs.get('con')?.get('path');
  const vfs = chardevs.get('vfs')?.get('path');
  return {
    sandboxId: name.slice(NAME_PREFIX.length),
    accel: values('-accel')[0] === 'kvm' ? 'kvm' : 'tcg',
    qmp,
    agent,
    ...(console ? { console } : {}),
    ...(vfs ? { vfs } : {}),
  };
}

/** `setpriv` prefix that runs the command as the VMM user with its supplementary groups. */
export const setprivArgs = (u: VmmUser): string[] => [
  '--reuid',
  String(u.uid),
  '--regid',
  String(u.gid),
  ...(u.groups.length ? ['--groups', u.groups.join(',')] : ['--clear-groups']),
  '--inh-caps=-all',
  '--',
];

/** The host TSC frequency in kHz (what a TCG guest's TSC runs at), from /proc/cpuinfo. */
export function hostTscKhz(cpuinfo = safeRead('/proc/cpuinfo')): number | undefined {
  const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo);
  return m?.[1] ? Math.round(Number(m[1]) * 1000) : undefined;
}

/** KVM can work here: the CPU advertises VT-x/AMD-V and /dev/kvm opens read-write. */
export function kvmPossible(cpuinfo = safeRead('/proc/cpuinfo')): boolean {
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return false;
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}
