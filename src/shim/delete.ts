/**
 * The `delete` subcommand: containerd runs it after every task delete and after a shim died (§1.4). It
 * stops and deletes the task through the agent (a no-op when it is gone already) and prints a
 * DeleteResponse, and nothing else, on stdout. Containerd waits 5 s: past `BUDGET_MS` the response goes
 * out anyway and the agent finishes the teardown on its own (it owns it, and rolls it forward after a crash).
 */
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { connectNats } from '../bus/connection.ts';
import { ensureError } from '../errors.ts';
import { agentClient } from './agent.ts';
import type { ShimConfig } from './config.ts';
import type { ShimFlags } from './flags.ts';
import { DeleteResponseSchema } from './gen/shim_pb.ts';
import { accepting, groupOf, socketPath } from './socket.ts';
import { rmSync } from 'node:fs';

const BUDGET_MS = 4_000;

export async function shimDelete(f: ShimFlags, cfg: ShimConfig, warn: (m: string) => void): Promise<Uint8Array> {
  const result = { pid: 0, exitStatus: 137, exitedAt: Date.now() }; // runc's answer for a task it had to kill
  const budget = new Promise<void>((res) => setTimeout(res, BUDGET_MS).unref());
  const work = (async () => {
    const nc = await connectNats(cfg.natsUrl, `corral-shim delete ${f.id}`, {
      timeoutMs: 2000,
      ...(cfg.creds ? { nkeySeedFile: cfg.creds } : {}),
    });
    try {
      const agent = agentClient(nc, cfg.node);
      await agent.kill(f.id, undefined, 9, true).catch(() => undefined); // gone or stopped: nothing to kill
      const r = await agent.delete(f.id, undefined, BUDGET_MS);
      Object.assign(result, r);
    } finally {
      await nc.close().catch(() => undefined);
    }
  })().catch((e: unknown) => {
    const ce = ensureError(e);
    if (ce.code !== 'NotFound') warn(`delete of ${f.id} through the agent: ${ce.code}: ${ce.message}`);
  });
  await Promise.race([work, budget]);
  const socket = socketPath(f.address, f.namespace, groupOf(f.bundle || process.cwd(), f.id), cfg.ttrpcAddress);
  if (groupOf(f.bundle || process.cwd(), f.id) === f.id && !(await accepting(socket, 200)))
    rmSync(socket, { force: true });
  return toBinary(
    DeleteResponseSchema,
    create(DeleteResponseSchema, {
      pid: result.pid,
      exitStatus: result.exitStatus,
      exitedAt: timestampFromMs(result.exitedAt),
    }),
  );
}
