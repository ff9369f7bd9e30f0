/** The Task API from the client side: one connection, typed calls on a node's subjects. */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../bus/connection.ts';
import { request } from '../bus/rpc.ts';
import { subjects, type TaskVerb } from '../bus/subjects.ts';
import { loadSettings } from '../agent/settings.ts';
import type { Parsed } from './args.ts';

export interface Client {
  nc: NatsConnection;
  node: string;
  call<T = Record<string, unknown>>(verb: TaskVerb, body: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  close(): Promise<void>;
}

export async function client(p: Parsed, env: NodeJS.ProcessEnv): Promise<Client> {
  const s = loadSettings({ nats: p.values.nats as string | undefined, node: p.values.node as string | undefined }, env);
  const nc = await connectNats(s.natsUrl, 'corral-cli');
  return {
    nc,
    node: s.node,
    call: (verb, body, timeoutMs = 30_000) => request(nc, subjects.task(s.node, verb), body, timeoutMs),
    close: async () => { await nc.drain().catch(() => {}); },
  };
}
