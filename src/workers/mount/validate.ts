/**
 * Decoded request maps → typed mount-worker arguments, once, at the edge. Every rejection is
 * InvalidArgument naming the op, the field, what was expected and what arrived. Path *rules* (roots,
 * `..`, symlinks) are the Mounter's; here only the shapes.
 */
import { err } from '../../errors.ts';
import type { MountSpec } from '../../domain/ops.ts';

type Req = Record<string, unknown>;

/** An fs type as mount(8) takes it with `-t`; no `/`, since mount(8) runs `/sbin/mount.<type>`. */
const FSTYPE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const MAX_MOUNTS = 128;
const MAX_OPTIONS = 256;
const MAX_TEXT = 8192;

const typeName = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bytes' : typeof v;

function text(op: string, field: string, v: unknown, { allowEmpty = false } = {}): string {
  if (typeof v !== 'string') throw err.invalid(`${op}: ${field} must be a string, got ${typeName(v)}`);
  if (!allowEmpty && v.length === 0) throw err.invalid(`${op}: ${field} must not be empty`);
  if (v.length > MAX_TEXT) throw err.invalid(`${op}: ${field} is longer than ${MAX_TEXT} characters`);
  if (v.includes('\0')) throw err.invalid(`${op}: ${field} must not contain NUL`);
  return v;
}

function optBool(op: string, field: string, v: unknown): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw err.invalid(`${op}: ${field} must be a boolean, got ${typeName(v)}`);
  return v;
}

function mountSpec(op: string, i: number, v: unknown): MountSpec {
  const at = `mounts[${i}]`;
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw err.invalid(`${op}: ${at} must be a map {type, source, options}, got ${typeName(v)}`);
  const m = v as Req;
  const type = text(op, `${at}.type`, m.type);
  if (!FSTYPE.test(type)) throw err.invalid(`${op}: ${at}.type ${JSON.stringify(type)} is not a filesystem type`);
  const source = text(op, `${at}.source`, m.source);
  const rawOptions = m.options ?? [];
  if (!Array.isArray(rawOptions))
    throw err.invalid(`${op}: ${at}.options must be an array of strings, got ${typeName(rawOptions)}`);
  if (rawOptions.length > MAX_OPTIONS) throw err.invalid(`${op}: ${at}.options has more than ${MAX_OPTIONS} entries`);
  const options = rawOptions.map((o, j) => text(op, `${at}.options[${j}]`, o));
  return { type, source, options };
}

export function parseMountRootfs(req: Req): { target: string; mounts: MountSpec[] } {
  const op = 'mountRootfs';
  const target = text(op, 'target', req.target);
  if (!Array.isArray(req.mounts)) throw err.invalid(`${op}: mounts must be an array, got ${typeName(req.mounts)}`);
  if (req.mounts.length === 0) throw err.invalid(`${op}: mounts must not be empty`);
  if (req.mounts.length > MAX_MOUNTS)
    throw err.invalid(`${op}: at most ${MAX_MOUNTS} mounts, got ${req.mounts.length}`);
  return { target, mounts: req.mounts.map((m, i) => mountSpec(op, i, m)) };
}

export function parseBind(req: Req): { source: string; target: string; readonly?: boolean } {
  const op = 'bind';
  return {
    source: text(op, 'source', req.source),
    target: text(op, 'target', req.target),
    readonly: optBool(op, 'readonly', req.readonly),
  };
}

export function parseUnmountAll(req: Req): { target: string; removeDir?: boolean } {
  const op = 'unmountAll';
  return { target: text(op, 'target', req.target), removeDir: optBool(op, 'removeDir', req.removeDir) };
}

export function parseMkdir(req: Req): { path: string; mode: number } {
  const op = 'mkdir';
  const mode = req.mode;
  if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw err.invalid(
      `${op}: mode must be an integer in 0..0o7777, got ${typeName(mode) === 'number' ? String(mode) : typeName(mode)}`,
    );
  }
  return { path: text(op, 'path', req.path), mode };
}

export function parseRemoveTree(req: Req): { path: string } {
  return { path: text('removeTree', 'path', req.path) };
}
