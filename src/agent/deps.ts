/** What the node agent is built from (the CLI's `corral agent` composes these; tests compose their own). */
import type { NatsConnection } from '@nats-io/transport-node';
import type { EventLog } from '../bus/eventlog.ts';
import type { Snapshots } from '../bus/snapshots.ts';
import type { Logger } from '../log.ts';
import type { CreateRules } from './create-rules.ts';
import type { Probe } from './effects.ts';
import type { Metrics } from './metrics.ts';
import type { Settings } from './settings.ts';
import type { WorkerWatch } from './worker-watch.ts';

export interface AgentDeps {
  nc: NatsConnection;
  settings: Settings;
  rules: CreateRules;
  events: EventLog;
  log: Logger;
  metrics: Metrics;
  watch?: WorkerWatch;
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
