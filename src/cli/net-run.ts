/**
 * `corral run --net bridge|none`: the flag, checked once, and the network it makes for the run
 * (net-bridge.ts). `none` (the default) is what a sandbox gets without it: loopback only.
 */
import { err } from '../errors.ts';
import type { MountSpec } from '../domain/ops.ts';
import type { Parsed } from './args.ts';
import type { Io } from './io.ts';
import { BRIDGE, bridgeNet, type RunNet } from './net-bridge.ts';

export const NET_OPTS = { net: { type: 'string' } } as const;

export async function runNetwork(
  p: Parsed,
  id: string,
  local: { bundle: string; rootfs: MountSpec[] } | undefined,
  io: Io,
): Promise<RunNet | undefined> {
  const mode = (p.values.net as string | undefined) ?? 'none';
  if (mode === 'none') return undefined;
  if (mode !== 'bridge') throw err.invalid(`--net ${JSON.stringify(mode)}: want bridge or none`);
  if (!local) throw err.invalid('--net bridge makes the namespace on this host: it does not go with --fleet');
  const net = await bridgeNet(id, local.bundle, local.rootfs.length > 0);
  if (!p.values.json) io.err(`network: ${id} gets ${net.address} on bridge ${BRIDGE} (this host: 10.213.0.1)`);
  return net;
}
