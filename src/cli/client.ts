/** The Task API from the client side: one connection, typed calls on a node's subjects. */
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../bus/connection.ts';
import type { TaskVerb } from '../bus/subjects.ts';
import { fleetCreateRequest, taskRequest } from '../bus/task-client.ts';
import { loadSettings } from '../agent/settings.ts';
import { locateTask, type Location } from '../fleet/locate.ts';
import type { Parsed } from './args.ts';

export interface Client {
  nc: NatsConnection;
  node: string;
  call<T = Record<string, unknown>>(verb: TaskVerb, body: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** The same Task API call on another node (after a fleet create chose it). */
  callOn<T = Record<string, unknown>>(
    node: string,
    verb: TaskVerb,
    body: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T>;
  /** A create through the fleet controller; the reply names the node. */
  fleetCreate<T = { id: string; node: string; pid: number }>(
    body: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<T>;
  /**
   * The node to address task `id` on: the one named (--node / CORRAL_NODE), else the one of the fleet
   * that holds it (fleet/locate.ts), else the default node when there is no fleet.
   */
  nodeOf(id: string): Promise<Location>;
  close(): Promise<void>;
}

export async function client(p: Parsed, env: NodeJS.ProcessEnv): Promise<Client> {
  const s = loadSettings(
    {
      nats: p.values.nats as string | undefined,
      node: p.values.node as string | undefined,
      creds: p.values.creds as string | undefined,
    },
    env,
  );
  const nc = await connectNats(s.natsUrl, 'corral-cli', { nkeySeedFile: s.credsFile });
  const named = p.values.node !== undefined || env.CORRAL_NODE !== undefined;
  return {
    nc,
    node: s.node,
    call: (verb, body, timeoutMs = 30_000) => taskRequest(nc, s.node, verb, body, timeoutMs),
    callOn: (node, verb, body, timeoutMs = 30_000) => taskRequest(nc, node, verb, body, timeoutMs),
    fleetCreate: (body, timeoutMs = 300_000) => fleetCreateRequest(nc, body, timeoutMs),
    nodeOf: async (id) => (named ? { node: s.node, located: false } : locateTask(nc, id, s.node)),
    close: async () => {
      await nc.drain().catch(() => {
        // The command is done (its replies came); a connection that cannot drain has nothing left to flush.
      });
    },
  };
}
