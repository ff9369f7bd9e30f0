/**
 * How the shim reaches its node's agent: environment only, since containerd starts it with its own
 * environment (plus TTRPC_ADDRESS): `CORRAL_NATS_URL` (else `NATS_URL`, else the local default),
 * `CORRAL_NODE` (else the hostname up to its first dot, as the agent defaults), `CORRAL_CREDS` (an NKEY seed file).
 * `corral shim install` writes them into the launcher it puts on containerd's PATH.
 */
import { hostname } from 'node:os';
import { DEFAULT_NATS_URL } from '../bus/connection.ts';
import { nodeName } from '../bus/node-name.ts';

export interface ShimConfig {
  natsUrl: string;
  node: string;
  creds?: string;
  ttrpcAddress: string;
}

export function shimConfig(env: NodeJS.ProcessEnv = process.env): ShimConfig {
  return {
    natsUrl: env.CORRAL_NATS_URL || env.NATS_URL || DEFAULT_NATS_URL,
    node: nodeName(env.CORRAL_NODE || hostname().split('.')[0]),
    ...(env.CORRAL_CREDS ? { creds: env.CORRAL_CREDS } : {}),
    ttrpcAddress: env.TTRPC_ADDRESS ?? '',
  };
}
