/**
 * Operator transitions of a node's state (pure): cordon, uncordon, drain and drained. A lost node keeps
 * `lost` (only its heartbeats bring it back); cordon/uncordon then change the state it returns to.
 */
import { err } from '../errors.ts';
import type { NodeEntry, NodeState } from './types.ts';

export type StateAction = 'cordon' | 'uncordon' | 'drain' | 'drained';

const TARGET: Record<StateAction, Exclude<NodeState, 'lost'>> = {
  cordon: 'cordoned',
  uncordon: 'ready',
  drain: 'draining',
  drained: 'cordoned',
};

/**
 * The entry after the action, or undefined when it is already there (no write).
 * - cordon: ready → cordoned (cordoned and draining stay as they are);
 * - uncordon: cordoned or draining → ready;
 * - drain: ready or cordoned → draining; drained: draining → cordoned (the node stays unschedulable);
 * - on a lost node, cordon and uncordon set the state it returns to when heartbeats resume.
 * @throws FailedPrecondition for drain of a lost node (nobody there to stop its sandboxes).
 */
export function withState(e: NodeEntry, action: StateAction): NodeEntry | undefined {
  const to = TARGET[action];
  if (e.state === 'lost') {
    if (action === 'drain' || action === 'drained')
      throw err.precondition(`node ${e.node} is lost: its sandboxes cannot be stopped through it`);
    return e.lostFrom === to ? undefined : { ...e, lostFrom: to };
  }
  if (action === 'cordon' && e.state !== 'ready') return undefined;
  if (action === 'drained' && e.state !== 'draining') return undefined;
  return e.state === to ? undefined : { ...e, state: to };
}

/** The entry after a heartbeat: `heartbeatAt` moves; a lost node returns to the state it had. */
export function withHeartbeat(e: NodeEntry, now: number): NodeEntry {
  const { lostAt: _a, lostFrom, ...rest } = e;
  return { ...rest, state: e.state === 'lost' ? (lostFrom ?? 'ready') : e.state, heartbeatAt: now };
}
