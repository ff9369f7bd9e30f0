/**
 * Simulated fleet nodes for tests and benchmarks: an AgentRegistration (capacity, heartbeats) plus a
 * fake Task API on `corral.v1.node.<name>.task.*` whose createInline records the create (the
 * controller reserved already) and answers at once. No agent, no worker, no VM: say so in the output.
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { serve } from '../../src/bus/serve.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { CorralError, err, type Code } from '../../src/errors.ts';
import type { CreateInlineBody } from '../../src/fleet/node-create.ts';
import { AgentRegistration } from '../../src/fleet/agent-registration.ts';
import type { NodeRegistry } from '../../src/fleet/registry.ts';
import type { Resources } from '../../src/fleet/types.ts';

export interface SimNode {
  name: string;
  reg: AgentRegistration;
  /** What createInline received, by task id. */
  created: Map<string, CreateInlineBody>;
  /** Make createInline fail with this code (a node that refuses). */
  refuse?: Code;
  kills: string[];
  /** Stop serving and leave the registry. */
  stop(): Promise<void>;
}

export async function simNode(
  nc: NatsConnection,
  reg: NodeRegistry,
  name: string,
  capacity: Resources,
  o: { labels?: Record<string, string>; heartbeatMs?: number; taskApi?: boolean } = {},
): Promise<SimNode> {
  let sub: Subscription | undefined;
  const n: SimNode = {
    name,
    created: new Map(),
    kills: [],
    reg: new AgentRegistration(reg, {
      node: name,
      capacity,
      labels: o.labels,
      simulated: true,
      version: 'test',
      heartbeatMs: o.heartbeatMs ?? 1000,
    }),
    async stop() {
      sub?.unsubscribe();
      await n.reg.deregister();
    },
  };
  await n.reg.register();
  if (o.taskApi !== false) {
    sub = serve(nc, subjects.task(name, '*'), (body, msg) => {
      const verb = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
      const b = body as CreateInlineBody & { signal?: string };
      switch (verb) {
        case 'createInline':
          if (n.refuse) throw new CorralError(n.refuse, `node ${name} refuses (test)`);
          if (n.created.has(b.id)) throw err.exists(`task ${b.id} already exists`);
          n.created.set(b.id, b);
          return { pid: 1000 + n.created.size };
        case 'list':
          return { tasks: [...n.created.keys()].map((id) => ({ id, kind: 'sandbox', status: 'running' })) };
        case 'state':
          if (!n.created.has(b.id)) throw err.notFound(`task ${b.id} not found`);
          return { id: b.id, status: 'running', pid: 1 };
        case 'kill':
          n.kills.push(`${b.id}:${b.signal}`);
          return {};
        case 'wait':
          return { exitStatus: 143, exitedAt: new Date().toISOString() };
        case 'delete':
          if (!n.created.delete(b.id)) throw err.notFound(`task ${b.id} not found`);
          return n.reg
            .release({ id: b.id })
            .then(() => ({ exitStatus: 143, exitedAt: new Date().toISOString(), pid: 1 }));
        default:
          throw err.invalid(`fake node: no verb ${verb}`);
      }
    });
  }
  return n;
}
