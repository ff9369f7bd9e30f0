/** What the node agent is built from (the CLI's `corral agent` composes these; tests compose their own). */
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventAppender } from '../bus/eventlog.ts';
import type { EventRecord } from '../bus/eventlog-reader.ts';
import type { Snapshots } from '../bus/snapshots.ts';
import type { Logger } from '../log.ts';
import type { CreateRules } from './create-rules.ts';
import type { Probe } from './effects.ts';
import type { Metrics } from './metrics.ts';
import type { Settings } from './settings.ts';
import type { WorkerClient } from './worker-client.ts';
import type { WorkerWatch } from './worker-watch.ts';

/**
 * What the task runtime, the Task API and recovery run on: ports, no NATS connection. The agent
 * (agent.ts) binds them to NATS; the simulator (sim/) to its simulated world.
 */
export interface RuntimeDeps {
  settings: Settings;
  rules: CreateRules;
  events: EventAppender;
  log: Logger;
  metrics: Metrics;
  /** The Worker API (typed by op, each call with its opId and deadline). */
  workers: WorkerClient;
  /** This node's records of the event log, in stream order (what recovery rebuilds from). */
  readLog: () => Promise<EventRecord[]>;
  /** The node's entry in the fleet registry (capacity released when a task goes). */
  registration?: {
    release(req: { id: string }): Promise<unknown>;
    hold(id: string, r: { vcpus: number; memoryMiB: number; ref: string }): void;
  };
  /** Where fleet creates (inline specs) get their bundles: one of the bundle roots. */
  inlineBundleRoot: string;
  /** Actor snapshots (bounded recovery); without it recovery replays each task's whole log. */
  snapshots?: Snapshots;
  /** Test-only points on the create path (effects.ts `Probe`; `after:create-input` here). */
  probe?: Probe;
  /** Called when a `shutdown` request is accepted (no tasks left). */
  onShutdown?: () => void;
}

/** The agent's deps: the runtime's, with the Worker API and the log reader bound to this connection. */
export interface AgentDeps extends Omit<RuntimeDeps, 'workers' | 'readLog'> {
  nc: NatsConnection;
  /** The node's records, when the caller started reading them early (start-up reads while it sets up). */
  readLog?: () => Promise<EventRecord[]>;
  watch?: WorkerWatch;
}
