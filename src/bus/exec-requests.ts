/**
 * The Task API's `exec` body → an exec id and its process (containerd's ExecProcessRequest, its `spec`
 * an OCI `process` object as config.json has it). Malformed input is InvalidArgument naming the field.
 */
import { err } from '../errors.ts';
import type { ExecProcess } from '../domain/task.ts';
import { bool, execIdOf, obj, taskId } from './task-requests.ts';

const strings = (v: unknown, what: string, max: number): string[] => {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.includes('\0')))
    throw err.invalid(`${what} must be a list of strings without NUL`);
  if (v.length > max) throw err.invalid(`${what} has more than ${max} entries`);
  return v as string[];
};
const id32 = (v: unknown, what: string): number => {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** 32)
    throw err.invalid(`${what} must be an integer in [0, 2^32)`);
  return v;
};

export function parseExec(body: unknown): { id: string; execId: string; process: ExecProcess } {
  const o = obj(body, 'request');
  const execId = execIdOf(o);
  if (!execId) throw err.invalid('exec needs an execId');
  const spec = obj(o.spec ?? {}, 'spec');
  const args = strings(spec.args, 'spec.args', 4096);
  if (!args.length) throw err.invalid('spec.args must not be empty');
  const env = strings(spec.env, 'spec.env', 4096);
  if (env.some((e) => !e.includes('='))) throw err.invalid('spec.env entries must be KEY=value');
  const cwd = spec.cwd ?? '/';
  if (typeof cwd !== 'string' || !cwd.startsWith('/') || cwd.includes('\0'))
    throw err.invalid('spec.cwd must be an absolute path');
  const user = obj(spec.user ?? {}, 'spec.user');
  const gids = user.additionalGids ?? [];
  if (!Array.isArray(gids) || gids.length > 256) throw err.invalid('spec.user.additionalGids: at most 256 gids');
  const additionalGids = gids.map((g, i) => id32(g, `spec.user.additionalGids[${i}]`));
  const stdin = o.stdin === true || (typeof o.stdin === 'string' && o.stdin !== '');
  return {
    id: taskId(o),
    execId,
    process: {
      args,
      env,
      cwd,
      uid: id32(user.uid, 'spec.user.uid'),
      gid: id32(user.gid, 'spec.user.gid'),
      additionalGids,
      terminal: bool(o, 'terminal') || bool(spec, 'terminal'),
      stdin,
    },
  };
}
