/**
 * The controller's leg to a node: what it sends to `corral.v1.node.<node>.task.createInline` once a
 * node is reserved (the inline spec, the reservation, the request's idempotency key), what comes back,
 * and the caller that sends it (over NATS, or a fake in tests).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { request as rpcRequest } from '../bus/rpc.ts';
import { subjects } from '../bus/subjects.ts';
import type { FleetCreateRequest } from './request.ts';

/** What the controller sends to `corral.v1.node.<node>.task.createInline`. */
export interface CreateInlineBody {
  id: string;
  /** The OCI spec (config.json) as a map: the node writes it to `<its bundle root>/<id>/config.json`. */
  spec: Record<string, unknown>;
  rootfs: FleetCreateRequest['rootfs'];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  options: { configPath?: string };
  /** The reservation made for it on the node's registry entry (null for a pod container: it joins its sandbox's VM). */
  reservation: { vcpus: number; memoryMiB: number; ref: string } | null;
  /** The fleet request's idempotency key (or one the controller made): the node joins repeats to the first. */
  requestId: string;
  /** What placed it (labels, VM base size), recorded by the node with the spec: a drain can recreate it elsewhere. */
  placement: { labels: Record<string, string>; vm?: FleetCreateRequest['vm'] };
}

/** The reply of createInline (as the Task API's create). */
export interface CreateInlineResult {
  pid: number;
}

/**
 * Sends createInline to a node; rejects with a CorralError (the node's, or Unavailable/Timeout from the
 * bus). Injectable for tests.
 */
export type NodeCaller = (node: string, body: CreateInlineBody, timeoutMs: number) => Promise<CreateInlineResult>;

/** The fleet create's reply. */
export interface FleetCreateResult {
  id: string;
  node: string;
  pid: number;
}

export const natsNodeCaller =
  (nc: NatsConnection): NodeCaller =>
  (node, body, timeoutMs) =>
    rpcRequest<CreateInlineResult>(nc, subjects.nodeCreateInline(node), body, timeoutMs);
