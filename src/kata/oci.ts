/**
 * The part of the OCI runtime spec (config.json) Corral reads, parsed and validated once
 * (kata-create-spec.md §5.2). Kata decodes loosely and panics later on missing sections or odd
 * capability elements; Corral rejects those documents here with InvalidArgument naming the field.
 *
 * Absent and `null` fields take Go's zero values (empty string, 0, false, []), as Kata's decoder does.
 * Integers must be safe JavaScript integers (|n| ≤ 2^53-1): larger values are rejected, not rounded.
 */
import * as path from 'node:path';
import { err } from '../errors.ts';
import { type KataFs, nodeFs, errnoOf, fsErrorText } from './fs.ts';
import { deepFreeze, isRecord } from './util.ts';

import {
  type OciCapabilities,
  type OciDevice,
  type OciHook,
  type OciHooks,
  type OciLinux,
  type OciProcess,
  type OciResources,
  type OciSpec,
} from './oci-types.ts';

export * from './oci-types.ts';

const DEVICE_TYPES = ['c', 'b', 'u', 'p'];
const bad = (field: string, want: string) => err.invalid(`config.json: ${field} must be ${want}`);

const str = (v: unknown, f: string): string => {
  if (v == null) return '';
  if (typeof v !== 'string') throw bad(f, 'a string');
  return v;
};
const bool = (v: unknown, f: string): boolean => {
  if (v == null) return false;
  if (typeof v !== 'boolean') throw bad(f, 'a boolean');
  return v;
};
const list = (v: unknown, f: string): unknown[] => {
  if (v == null) return [];
  if (!Array.isArray(v)) throw bad(f, 'an array');
  return v;
};
/** A string that must be present (array elements, annotation values). */
const req = (v: unknown, f: string): string => {
  if (typeof v !== 'string') throw bad(f, 'a string');
  return v;
};
const strs = (v: unknown, f: string): string[] => list(v, f).map((x, i) => req(x, `${f}[${i}]`));
const table = (v: unknown, f: string): Record<string, unknown> | undefined => {
  if (v == null) return undefined;
  if (!isRecord(v)) throw bad(f, 'an object');
  return v;
};
/** An integer in [min, max]; absent → undefined. */
function int(v: unknown, f: string, min: number, max: number, want: string): number | undefined {
  if (v == null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) throw bad(f, want);
  return v;
}
const U32 = 0xffff_ffff;
const S = Number.MAX_SAFE_INTEGER;
const uint32 = (v: unknown, f: string) => int(v, f, 0, U32, 'a non-negative integer (uint32)');
const uint64 = (v: unknown, f: string) => int(v, f, 0, S, 'a non-negative integer');
const int64 = (v: unknown, f: string) => int(v, f, -S, S, 'an integer');

/** §5.2: the array form (rc4) fills all five sets; the object form (rc5+) ignores unknown keys. */
function capabilities(v: unknown): OciCapabilities {
  const f = 'process.capabilities';
  const unexpected = () => err.invalid(`Unexpected format for capabilities: ${JSON.stringify(v)}`);
  const names = (xs: unknown[], where: string) =>
    xs.map((x, i) => {
      if (typeof x !== 'string')
        throw err.invalid(`Unexpected format for capabilities: ${where}[${i}] must be a string`);
      return x;
    });
  if (v == null) return { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] };
  if (Array.isArray(v)) {
    const all = names(v, f);
    return { bounding: all, effective: [...all], inheritable: [...all], permitted: [...all], ambient: [...all] };
  }
  if (!isRecord(v)) throw unexpected();
  const out: Record<string, string[]> = {};
  for (const [k, x] of Object.entries(v)) {
    if (!Array.isArray(x)) throw unexpected();
    out[k] = names(x, `${f}.${k}`);
  }
  const set = (k: keyof OciCapabilities) => out[k] ?? [];
  return {
    bounding: set('bounding'),
    effective: set('effective'),
    inheritable: set('inheritable'),
    permitted: set('permitted'),
    ambient: set('ambient'),
  };
}

function processOf(v: unknown): OciProcess {
  const p = table(v, 'process');
  if (!p) throw err.invalid('ContainerCapabilities, Process is nil');
  const u = table(p.user, 'process.user') ?? {};
  return {
    terminal: bool(p.terminal, 'process.terminal'),
    user: {
      uid: uint32(u.uid, 'process.user.uid') ?? 0,
      gid: uint32(u.gid, 'process.user.gid') ?? 0,
      additionalGids: list(u.additionalGids, 'process.user.additionalGids').map(
        // null is not a gid: NaN fails the check.
        (g, i) => uint32(g ?? NaN, `process.user.additionalGids[${i}]`) as number,
      ),
    },
    args: strs(p.args, 'process.args'),
    env: strs(p.env, 'process.env'),
    cwd: str(p.cwd, 'process.cwd'),
    capabilities: capabilities(p.capabilities),
    noNewPrivileges: bool(p.noNewPrivileges, 'process.noNewPrivileges'),
  };
}

function resourcesOf(v: unknown): OciResources {
  const r = table(v, 'linux.resources');
  if (!r) throw err.invalid('config.json: missing linux.resources section');
  const cpu = table(r.cpu, 'linux.resources.cpu');
  const mem = table(r.memory, 'linux.resources.memory');
  const pids = table(r.pids, 'linux.resources.pids');
  const optStr = (x: unknown, f: string) => (x == null ? undefined : str(x, f));
  const defined = <T extends object>(o: T) =>
    Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as T;
  return defined({
    cpu:
      cpu &&
      defined({
        quota: int64(cpu.quota, 'linux.resources.cpu.quota'),
        period: uint64(cpu.period, 'linux.resources.cpu.period'),
        shares: uint64(cpu.shares, 'linux.resources.cpu.shares'),
        cpus: optStr(cpu.cpus, 'linux.resources.cpu.cpus'),
        mems: optStr(cpu.mems, 'linux.resources.cpu.mems'),
      }),
    memory:
      mem &&
      defined({
        limit: int64(mem.limit, 'linux.resources.memory.limit'),
        reservation: int64(mem.reservation, 'linux.resources.memory.reservation'),
        swap: int64(mem.swap, 'linux.resources.memory.swap'),
      }),
    pids: pids && defined({ limit: int64(pids.limit, 'linux.resources.pids.limit') }),
  });
}

function deviceOf(v: unknown, i: number): OciDevice {
  const f = `linux.devices[${i}]`;
  const d = table(v, f) ?? {};
  const type = str(d.type, `${f}.type`);
  const p = str(d.path, `${f}.path`);
  if (!DEVICE_TYPES.includes(type)) throw err.invalid(`Unexpected Device Type ${type} for device ${p}`);
  if (p === '') throw err.invalid('Path cannot be empty for device');
  const dev: { -readonly [K in keyof OciDevice]: OciDevice[K] } = {
    type,
    path: p,
    major: int64(d.major, `${f}.major`) ?? 0,
    minor: int64(d.minor, `${f}.minor`) ?? 0,
  };
  for (const k of ['fileMode', 'uid', 'gid'] as const) {
    const x = uint32(d[k], `${f}.${k}`);
    if (x !== undefined) dev[k] = x;
  }
  return dev;
}

function linuxOf(v: unknown): OciLinux {
  const l = table(v, 'linux');
  if (!l) throw err.invalid('missing Linux section');
  return {
    resources: resourcesOf(l.resources),
    namespaces: list(l.namespaces, 'linux.namespaces').map((n, i) => {
      const t = table(n, `linux.namespaces[${i}]`) ?? {};
      return { type: str(t.type, `linux.namespaces[${i}].type`), path: str(t.path, `linux.namespaces[${i}].path`) };
    }),
    devices: list(l.devices, 'linux.devices').map(deviceOf),
  };
}

function hooksOf(v: unknown): OciHooks {
  const h = table(v, 'hooks') ?? {};
  const hook = (x: unknown, f: string): OciHook => {
    const t = table(x, f) ?? {};
    const timeout = int64(t.timeout, `${f}.timeout`);
    const base = { path: str(t.path, `${f}.path`), args: strs(t.args, `${f}.args`), env: strs(t.env, `${f}.env`) };
    return timeout === undefined ? base : { ...base, timeout };
  };
  const hooks = (k: keyof OciHooks) => list(h[k], `hooks.${k}`).map((x, i) => hook(x, `hooks.${k}[${i}]`));
  // In HOOK_KINDS order; the OciHooks type (mapped from HOOK_KINDS) makes a missing kind an error.
  return {
    prestart: hooks('prestart'),
    createRuntime: hooks('createRuntime'),
    createContainer: hooks('createContainer'),
    startContainer: hooks('startContainer'),
    poststart: hooks('poststart'),
    poststop: hooks('poststop'),
  };
}

/**
 * Parse and validate config.json text.
 * @throws InvalidArgument: the JSON parser's message for malformed text; `ContainerCapabilities, Process is nil`;
 *   `Unexpected format for capabilities: ...`; `missing Linux section`; `config.json: missing root section`;
 *   `config.json: missing linux.resources section`; `Unexpected Device Type X for device P`;
 *   `Path cannot be empty for device`; `config.json: <field> must be <type>` for wrong types.
 */
export function parseSpec(text: string): OciSpec {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw err.invalid(`config.json is not valid JSON: ${(e as Error).message}`, e);
  }
  if (!isRecord(doc)) throw err.invalid('config.json: the document must be a JSON object');
  const process = processOf(doc.process);
  const root = table(doc.root, 'root');
  if (!root) throw err.invalid('config.json: missing root section');
  const ann = table(doc.annotations, 'annotations') ?? {};
  return deepFreeze({
    ociVersion: str(doc.ociVersion, 'ociVersion'),
    hostname: str(doc.hostname, 'hostname'),
    process,
    root: { path: str(root.path, 'root.path'), readonly: bool(root.readonly, 'root.readonly') },
    mounts: list(doc.mounts, 'mounts').map((m, i) => {
      const f = `mounts[${i}]`;
      const t = table(m, f) ?? {};
      return {
        destination: str(t.destination, `${f}.destination`),
        type: str(t.type, `${f}.type`),
        source: str(t.source, `${f}.source`),
        options: strs(t.options, `${f}.options`),
      };
    }),
    annotations: Object.fromEntries(
      Object.entries(ann).map(([k, x]) => [k, req(x, `annotations[${JSON.stringify(k)}]`)]),
    ),
    linux: linuxOf(doc.linux),
    hooks: hooksOf(doc.hooks),
  });
}

/**
 * Read and parse `<bundleDir>/config.json` (pass the resolved bundle from `validBundle`).
 * @throws NotFound `open <path>: no such file or directory`; InvalidArgument for other read errors
 *   and for everything {@link parseSpec} rejects.
 */
export async function readSpec(bundleDir: string, fs: KataFs = nodeFs): Promise<OciSpec> {
  const file = path.join(bundleDir, 'config.json');
  let text: string;
  try {
    text = await fs.readFile(file);
  } catch (e) {
    const msg = fsErrorText('open', file, e);
    throw errnoOf(e) === 'ENOENT' ? err.notFound(msg, e) : err.invalid(msg, e);
  }
  return parseSpec(text);
}

/** One environment variable of the workload command. */
export interface EnvVar {
  readonly name: string;
  readonly value: string;
}

/**
 * The workload's environment from `process.env`: entries without `=` are dropped (as Kata's
 * `cmdEnvs`), and each entry splits on its FIRST `=`. Kata splits on every `=` and keeps two pieces,
 * so `A=b=c` became `A=b`; Corral keeps `b=c`, as Kata's exec path (`getEnvs`) already does.
 */
export const envForProcess = (env: readonly string[]): EnvVar[] =>
  env.flatMap((e) => {
    const i = e.indexOf('=');
    return i < 0 ? [] : [{ name: e.slice(0, i), value: e.slice(i + 1) }];
  });
