/**
 * Task events to containerd: `containerd.services.events.ttrpc.v1.Events/Forward` on `TTRPC_ADDRESS`, one
 * at a time in the order they were emitted (create < start < exit < delete), each retried with a fresh
 * connection until it is taken (containerd restarting) or `GIVE_UP_MS` passed. The Any's `type_url` is the
 * bare message name (`containerd.events.TaskExit`): containerd 1.6 cannot resolve a prefixed one.
 */
import { create, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { ensureError } from '../errors.ts';
import type { Log } from '../log.ts';
import type { ShimEvent } from './event-types.ts';
import { EnvelopeSchema, Events, ForwardRequestSchema } from './gen/events_service_pb.ts';
import * as ev from './gen/task_events_pb.ts';
import { TtrpcClient } from './ttrpc/client.ts';

const GIVE_UP_MS = 60_000;
const ATTEMPT_MS = 5_000;

function any<D extends DescMessage>(schema: D, init: MessageInitShape<D>) {
  return { typeUrl: schema.typeName, value: toBinary(schema, create(schema, init)) };
}

/** The event as containerd's message, packed. */
export function encodeEvent(e: ShimEvent) {
  switch (e.topic) {
    case '/tasks/create':
      return any(ev.TaskCreateSchema, {
        containerId: e.containerId,
        bundle: e.bundle,
        rootfs: e.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: m.options })),
        io: e.io,
        pid: e.pid,
      });
    case '/tasks/start':
      return any(ev.TaskStartSchema, { containerId: e.containerId, pid: e.pid });
    case '/tasks/exit':
      return any(ev.TaskExitSchema, { ...e, exitedAt: timestampFromMs(e.exitedAt) });
    case '/tasks/delete':
      return any(ev.TaskDeleteSchema, { ...e, exitedAt: timestampFromMs(e.exitedAt) });
    case '/tasks/exec-added':
      return any(ev.TaskExecAddedSchema, e);
    case '/tasks/exec-started':
      return any(ev.TaskExecStartedSchema, e);
    case '/tasks/paused':
      return any(ev.TaskPausedSchema, e);
    case '/tasks/resumed':
      return any(ev.TaskResumedSchema, e);
    case '/tasks/oom':
      return any(ev.TaskOOMSchema, e);
  }
}

export class EventForwarder {
  private queue: Promise<void> = Promise.resolve();
  private client: TtrpcClient | undefined;

  constructor(
    private readonly ttrpcAddress: string,
    private readonly namespace: string,
    private readonly log: Log,
  ) {}

  /** Queues the event; never throws (a lost event is logged, as containerd's own shims do). */
  emit(e: ShimEvent): void {
    const payload = toBinary(
      ForwardRequestSchema,
      create(ForwardRequestSchema, {
        envelope: create(EnvelopeSchema, {
          timestamp: timestampFromMs(Date.now()),
          namespace: this.namespace,
          topic: e.topic,
          event: encodeEvent(e),
        }),
      }),
    );
    this.queue = this.queue.then(() => this.send(e.topic, payload));
  }

  /** Resolves once every queued event was sent or given up. */
  drain() {
    return this.queue;
  }

  private async send(topic: string, payload: Uint8Array) {
    if (!this.ttrpcAddress) return;
    const until = Date.now() + GIVE_UP_MS;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      try {
        this.client ??= await TtrpcClient.connect(this.ttrpcAddress, { timeoutMs: ATTEMPT_MS });
        await this.client.call(Events.typeName, 'Forward', payload, {
          timeoutMs: ATTEMPT_MS,
          metadata: { 'containerd-namespace-ttrpc': this.namespace },
        });
        return;
      } catch (e) {
        this.client?.close();
        this.client = undefined;
        if (Date.now() + delay > until) {
          this.log.error({ err: ensureError(e), topic }, 'event not delivered to containerd: given up');
          return;
        }
        await new Promise((r) => setTimeout(r, delay)); // back-off between attempts, not synchronisation
      }
    }
  }

  close() {
    this.client?.close();
  }
}
