/**
 * Decoded request maps → typed network-worker arguments, once, at the edge. Every rejection is
 * InvalidArgument naming the op and the field. Namespace paths must be absolute and free of `..`; sandbox
 * ids follow Corral's id rule (they end up in link aliases and namespace names).
 */
import { err } from '../../errors.ts';
import { NET_MODELS } from '../../domain/network.ts';
import type { OpArgs } from '../../domain/ops.ts';

type Req = Record<string, unknown>;
/** A value for a message: a string quoted, anything else by its type (a bigint or a cycle would make JSON throw). */
const show = (v: unknown): string =>
  typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function netns(op: string, v: unknown): string {
  if (typeof v !== 'string' || !v.startsWith('/') || v.split('/').includes('..') || v.length > 4096)
    throw err.invalid(`${op}: netns must be an absolute path without '..', got ${show(v)}`);
  return v;
}

function sandboxId(op: string, v: unknown): string {
  if (typeof v !== 'string' || !ID.test(v))
    throw err.invalid(`${op}: sandboxId must match ${ID.source}, got ${show(v)}`);
  return v;
}

export function parseSetup(req: Req): OpArgs<'network', 'setup'> {
  const op = 'setup';
  const model = NET_MODELS.find((m) => m === req.model);
  if (!model) throw err.invalid(`${op}: model must be one of ${NET_MODELS.join(', ')}, got ${show(req.model)}`);
  return { sandboxId: sandboxId(op, req.sandboxId), netns: netns(op, req.netns), model };
}

export const parseTeardown = (req: Req): OpArgs<'network', 'teardown'> => ({
  sandboxId: sandboxId('teardown', req.sandboxId),
  netns: netns('teardown', req.netns),
});

export const parseNetns = (op: 'createNetns' | 'removeNetns', req: Req): { netns: string } => ({
  netns: netns(op, req.netns),
});
