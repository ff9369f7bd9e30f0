/**
 * `boot`'s `network` (a decoded, untrusted map) → SandboxNetwork, at the edge: shapes only, each rejection an
 * InvalidArgument naming the field. The values' rules (names, MACs, CIDRs, lengths) are `validateNetwork`'s
 * (qemu-net.ts), so that they hold for callers of the driver too.
 */
import { err } from '../../errors.ts';
import type { GuestNic, GuestRoute, NicTap, SandboxNetwork } from '../../domain/network.ts';

type Req = Record<string, unknown>;
const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const bad = (field: string, want: string, v: unknown) => err.invalid(`boot: ${field} must be ${want}, got ${kind(v)}`);

function map(field: string, v: unknown): Req {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw bad(field, 'a map', v);
  return v as Req;
}
function str(field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw bad(field, 'a non-empty string', v);
  return v;
}
function int(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(field, 'an integer', v);
  return v;
}
function list<T>(field: string, v: unknown, item: (field: string, v: unknown) => T): T[] {
  if (!Array.isArray(v)) throw bad(field, 'a list', v);
  return v.map((x, i) => item(`${field}[${i}]`, x));
}

function tap(field: string, v: unknown): NicTap {
  const t = map(field, v);
  const name = str(`${field}.name`, t.name);
  if (t.kind === 'tap') return { kind: 'tap', name };
  if (t.kind === 'macvtap') return { kind: 'macvtap', name, device: str(`${field}.device`, t.device) };
  const got = typeof t.kind === 'string' ? JSON.stringify(t.kind) : kind(t.kind);
  throw err.invalid(`boot: ${field}.kind must be tap or macvtap, got ${got}`);
}

function nic(field: string, v: unknown): GuestNic {
  const c = map(field, v);
  return {
    name: str(`${field}.name`, c.name),
    mac: str(`${field}.mac`, c.mac),
    mtu: int(`${field}.mtu`, c.mtu),
    addrs: list(`${field}.addrs`, c.addrs, str),
    tap: tap(`${field}.tap`, c.tap),
  };
}

function route(field: string, v: unknown): GuestRoute {
  const r = map(field, v);
  const family = int(`${field}.family`, r.family);
  if (family !== 4 && family !== 6) throw err.invalid(`boot: ${field}.family must be 4 or 6, got ${family}`);
  const gateway = r.gateway === undefined || r.gateway === null ? {} : { gateway: str(`${field}.gateway`, r.gateway) };
  return { family, dst: str(`${field}.dst`, r.dst), dev: str(`${field}.dev`, r.dev), ...gateway };
}

export function parseNetwork(v: unknown): SandboxNetwork {
  const n = map('network', v);
  return {
    netns: str('network.netns', n.netns),
    nics: list('network.nics', n.nics, nic),
    routes: list('network.routes', n.routes, route),
  };
}
