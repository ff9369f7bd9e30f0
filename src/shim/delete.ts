/**
 * The `delete` subcommand: containerd runs it after every task delete and after a shim died (§1.4). It
 * stops the task through the agent (SIGKILL, then its exit), deletes it (a no-op when it is gone already)
 * and prints a DeleteResponse, and nothing else, on stdout. containerd gives it 5 s: past `BUDGET_MS` the
 * response goes out anyway and a detached `reap` of the same task finishes the stop and the delete (within
 * `REAP_MS`), so a slow teardown never leaves a task behind.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { connectNats } from '../bus/connection.ts';
import { ensureError } from '../errors.ts';
import { agentClient, type Exit } from './agent.ts';
import type { ShimConfig } from './config.ts';
import type { ShimFlags } from './flags.ts';
import { DeleteResponseSchema } from './gen/shim_pb.ts';
import { accepting, groupOf, socketPath } from './socket.ts';

const BUDGET_MS = 4_000;
const REAP_MS = 300_000;

/** Kill, wait, delete: what is left of the task when its shim is gone. Resolves with the delete's answer. */
export async function stopAndDelete(f: ShimFlags, cfg: ShimConfig, ms: number): Promise<Exit & { pid: number }> {
  const nc = await connectNats(cfg.natsUrl, `corral-shim ${f.action} ${f.id}`, {
    timeoutMs: 2000,
    ...(cfg.creds ? { nkeySeedFile: cfg.creds } : {}),
  });
  try {
    const agent = agentClient(nc, cfg.node);
    const ignore = (e: unknown) => {
      if (ensureError(e).code !== 'NotFound') throw e;
    };
    await agent.kill(f.id, undefined, 9, true).catch(ignore);
    await agent.waitFor(f.id, ms).catch(ignore);
    return await agent.delete(f.id, undefined, ms);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

export async function shimDelete(f: ShimFlags, cfg: ShimConfig, warn: (m: string) => void): Promise<Uint8Array> {
  const result = { pid: 0, exitStatus: 137, exitedAt: Date.now() }; // runc's answer for a task it had to kill
  let done = false;
  const work = stopAndDelete(f, cfg, BUDGET_MS).then(
    (r) => {
      done = true;
      Object.assign(result, r);
    },
    (e: unknown) => {
      const ce = ensureError(e);
      done = ce.code === 'NotFound';
      if (!done) warn(`delete of ${f.id} through the agent: ${ce.code}: ${ce.message}`);
    },
  );
  await Promise.race([work, new Promise((res) => setTimeout(res, BUDGET_MS).unref())]);
  if (!done) reapLater(f);
  // A dead shim's socket file goes too, unless it is a pod's (the sandbox's shim serves the others).
  const group = groupOf(f.bundle || process.cwd(), f.id);
  const socket = socketPath(f.address, f.namespace, group, cfg.ttrpcAddress);
  if (group === f.id && !(await accepting(socket, 200))) rmSync(socket, { force: true });
  const res = create(DeleteResponseSchema, { ...result, exitedAt: timestampFromMs(result.exitedAt) });
  return toBinary(DeleteResponseSchema, res);
}

/** The same teardown in a detached process of its own, past containerd's deadline. */
function reapLater(f: ShimFlags) {
  const script = process.argv[1];
  if (!script) return;
  const args = ['-namespace', f.namespace, '-address', f.address, '-id', f.id, 'reap'];
  spawn(process.execPath, [...process.execArgv, script, ...args], { detached: true, stdio: 'ignore' }).unref();
}

export const REAP_DEADLINE_MS = REAP_MS;
