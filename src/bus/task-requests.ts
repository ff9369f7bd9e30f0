/**
 * Task API wire bodies → typed requests, once, at the edge (the agent's Task API and the fleet's create
 * both parse with these). Anything malformed is InvalidArgument naming the field; unknown fields are
 * ignored (forward compatibility, as protobuf does).
 */
import { err } from '../errors.ts';
import type { CreateTaskRequest } from '../domain/task.ts';
import type { MountSpec } from '../domain/ops.ts';

export type Obj = Record<string, unknown>;

export function obj(v: unknown, what: string): Obj {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array)
    throw err.invalid(`${what} must be a map`);
  return v as Obj;
}
export function str(o: Obj, k: string, opts: { required?: boolean; max?: number } = {}): string {
  const v = o[k];
  if (v === undefined || v === null) {
    if (opts.required) throw err.invalid(`${k} is required`);
    return '';
  }
  if (typeof v !== 'string') throw err.invalid(`${k} must be a string, got ${typeof v}`);
  if (v.length > (opts.max ?? 4096)) throw err.invalid(`${k} is longer than ${opts.max ?? 4096} characters`);
  if (v.includes('\0')) throw err.invalid(`${k} must not contain NUL`);
  return v;
}
export function bool(o: Obj, k: string): boolean {
  const v = o[k];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw err.invalid(`${k} must be a boolean, got ${typeof v}`);
  return v;
}
export function int(o: Obj, k: string, dflt: number, min: number, max: number): number {
  const v = o[k];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw err.invalid(`${k} must be an integer in [${min}, ${max}]`);
  return v;
}

/** The task id every verb names. The create path applies Kata's full id rule; here only shape. */
export function taskId(body: unknown): string {
  return str(obj(body, 'request'), 'id', { required: true, max: 256 });
}

export function parseCreate(body: unknown): CreateTaskRequest {
  const o = obj(body, 'request');
  const rootfsRaw = o.rootfs ?? [];
  if (!Array.isArray(rootfsRaw)) throw err.invalid('rootfs must be a list of {type, source, options}');
  if (rootfsRaw.length > 64) throw err.invalid('rootfs has more than 64 entries');
  const rootfs: MountSpec[] = rootfsRaw.map((m, i) => {
    const e = obj(m, `rootfs[${i}]`);
    const options = e.options ?? [];
    if (!Array.isArray(options) || options.some((x) => typeof x !== 'string' || x.includes('\0')))
      throw err.invalid(`rootfs[${i}].options must be a list of strings`);
    try {
      return {
        type: str(e, 'type', { required: true, max: 64 }),
        source: str(e, 'source', { required: true }),
        options: options as string[],
      };
    } catch (x) {
      throw err.invalid(`rootfs[${i}].${(x as Error).message}`);
    }
  });
  const opts = o.options === undefined || o.options === null ? {} : obj(o.options, 'options');
  const configPath = str(opts, 'configPath');
  return {
    id: taskId(o),
    bundle: str(o, 'bundle'),
    rootfs,
    terminal: bool(o, 'terminal'),
    stdin: str(o, 'stdin'),
    stdout: str(o, 'stdout'),
    stderr: str(o, 'stderr'),
    checkpoint: str(o, 'checkpoint'),
    parentCheckpoint: str(o, 'parentCheckpoint'),
    options: configPath ? { configPath } : {},
  };
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGCONT: 18,
  SIGSTOP: 19,
};

/** `9`, `KILL` or `SIGKILL` → 9. */
export function parseSignal(v: unknown): number {
  if (v === undefined || v === null) return 15;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 64) return v;
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return parseSignal(Number(v));
    const n = SIGNALS[v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`];
    if (n) return n;
  }
  throw err.invalid(`unknown signal ${JSON.stringify(v)}`);
}

/**
 * An exec id (containerd's identifier rule: alphanumeric runs joined by single `.`, `_` or `-`, at
 * most 76 characters); absent or empty: the task's init process.
 */
export function execIdOf(o: Obj): string | undefined {
  const v = o.execId;
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || v.length > 76 || !/^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/.test(v))
    throw err.invalid(
      `execId ${JSON.stringify(v)} must be at most 76 letters and digits, joined by single '.', '_' or '-'`,
    );
  return v;
}

export function parseKill(body: unknown): { id: string; signal: number; all: boolean; execId?: string } {
  const o = obj(body, 'request');
  return { id: taskId(o), signal: parseSignal(o.signal), all: bool(o, 'all'), execId: execIdOf(o) };
}

export function parseWait(body: unknown): { id: string; timeoutMs: number; execId?: string } {
  const o = obj(body, 'request');
  return { id: taskId(o), timeoutMs: int(o, 'timeoutMs', 0, 0, 7 * 24 * 3600_000), execId: execIdOf(o) };
}

/** `{id, execId?}`: start, delete, state and closeIO name a process this way. */
export function parseProcessRef(body: unknown): { id: string; execId?: string } {
  const o = obj(body, 'request');
  return { id: taskId(o), execId: execIdOf(o) };
}

/** containerd's ResizePty: `width` columns, `height` rows (1..65535 each). */
export function parseResize(body: unknown): { id: string; execId?: string; rows: number; cols: number } {
  const o = obj(body, 'request');
  if (o.width === undefined || o.height === undefined) throw err.invalid('resize needs width and height');
  return {
    id: taskId(o),
    execId: execIdOf(o),
    cols: int(o, 'width', 0, 1, 65535),
    rows: int(o, 'height', 0, 1, 65535),
  };
}
