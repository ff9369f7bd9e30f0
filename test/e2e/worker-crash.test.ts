/**
 * Workers crash too: the hypervisor worker SIGKILLed while sandboxes run. The agent restarts it; the new
 * worker adopts the node's VMs (QMP, the guest agent's LIST/STATE) and the sandboxes carry on: same VMM,
 * output, kill, wait, delete, and an exit that happened while no worker listened is reported. A VM that
 * cannot be adopted is stopped and its sandbox torn down (exit 255). Nothing is left afterwards.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { parseQemuCmdline } from '../../src/workers/hypervisor/qemu-args.ts';
import type { Adoption, VmInfo } from '../../src/workers/hypervisor/hypervisor.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';
import { processesMatching } from '../helpers/leaks.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  // the agent that answers LIST
  execFileSync('bash', [join(REPO, 'infra/guest/build.sh')], { stdio: 'inherit', timeout: 900_000 });
  n = await testNode({ faults: true });
}, 900_000);
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

type Scan = {
  vms: { sandboxId: string; pid: number }[];
  managed: (VmInfo & { processes: string[] })[];
  adoption: Adoption | null;
};
const hv = <T>(op: string, timeoutMs = 2000) =>
  request<T>(n.nc, subjects.worker(n.node, 'hypervisor', op), {}, timeoutMs);

/**
 * SIGKILL the hypervisor worker (after `before`, if given); resolves once the agent has restarted it
 * and its adoption has settled.
 */
async function killWorker(before?: (pid: number) => Promise<void> | void) {
  const { pid } = await hv<{ pid: number }>('__ping');
  await before?.(pid);
  const t0 = performance.now();
  process.kill(pid, 'SIGKILL');
  const back = (await waitFor(() => hv<{ pid: number }>('__ping', 500).catch(() => undefined), {
    until: (b) => b !== undefined && b.pid !== pid,
    timeoutMs: 30_000,
    what: `the agent to restart the hypervisor worker (killed: pid ${pid})`,
  }))!;
  const restartMs = Math.round(performance.now() - t0);
  const scan = await waitFor(() => hv<Scan>('scan', 5000), {
    until: (s) => s.adoption !== null,
    timeoutMs: 30_000,
    intervalMs: 100,
    what: 'the new worker to settle its adoption',
  });
  const settledMs = Math.round(performance.now() - t0);
  console.log(
    `worker ${pid} killed → ${back.pid} answers after ${restartMs} ms, adoption settled after ${settledMs} ms: ` +
      JSON.stringify(scan.adoption),
  );
  return { oldPid: pid, newPid: back.pid, restartMs, settledMs, scan };
}

/**
 * Bytes waiting unread in process `pid`'s end of its connection to the unix socket at `path` (the
 * Recv-Q that `ss -x` shows). The server's end of the connection carries `path`; `pid`'s end is its peer.
 */
function unreadBytes(pid: number, path: string): number {
  let out: string;
  try {
    out = execFileSync('ss', ['-xpnH'], { encoding: 'utf8' });
  } catch (e) {
    throw new Error(`this test reads socket queues with ss (iproute2): ${(e as Error).message}`, { cause: e });
  }
  // Netid State Recv-Q Send-Q Local-Address Local-Inode Peer-Address Peer-Inode users:(...)
  const rows = out.split('\n').map((l) => l.trim().split(/\s+/));
  const served = new Set(rows.filter((r) => r[1] === 'ESTAB' && r[4] === path).map((r) => r[5]));
  return rows
    .filter((r) => r[1] === 'ESTAB' && served.has(r[7]) && r.slice(8).join(' ').includes(`pid=${pid},`))
    .reduce((sum, r) => sum + Number(r[2]), 0);
}

const sandbox = async (id: string, args: string[]) => {
  ids.push(id);
  const { pid } = await n.call<{ pid: number }>('create', { id, bundle: n.bundle(id, { args }) });
  return pid;
};

describe('the hypervisor worker SIGKILLed while sandboxes run', () => {
  it('comes back and adopts its VMs: same VMM, output carries on, kill gives 137, delete leaves nothing', async () => {
    const sleeperPid = await sandbox('wc-sleep', ['sleep', '600']);
    const loopPid = await sandbox('wc-loop', [
      'sh',
      '-c',
      'i=0; while :; do i=$((i+1)); echo "line $i"; sleep 1; done',
    ]);
    const lines: { n: number; at: number }[] = [];
    const sub = n.nc.subscribe(subjects.io(n.node, 'wc-loop', 'stdout'), {
      callback: (e, m) => {
        if (!e)
          for (const l of Buffer.from(m.data).toString().split('\n'))
            if (/^line \d+$/.test(l)) lines.push({ n: Number(l.slice(5)), at: Date.now() });
      },
    });
    try {
      await n.call('start', { id: 'wc-sleep' });
      await n.call('start', { id: 'wc-loop' });
      await waitFor(() => lines.length >= 2, { timeoutMs: 30_000, what: 'two lines of wc-loop' });

      const k = await killWorker();
      const back = Date.now();
      expect(k.scan.adoption!.stopped).toEqual([]);
      expect(k.scan.adoption!.adopted.map((a) => [a.sandboxId, a.pid, a.running]).sort()).toEqual([
        ['wc-loop', loopPid, ['wc-loop']],
        ['wc-sleep', sleeperPid, ['wc-sleep']],
      ]);
      expect(k.scan.managed.map((v) => [v.sandboxId, v.pid, v.state, v.adoptedAt! > 0, v.processes]).sort()).toEqual([
        ['wc-loop', loopPid, 'running', true, ['wc-loop']],
        ['wc-sleep', sleeperPid, 'running', true, ['wc-sleep']],
      ]);
      for (const [id, pid] of [
        ['wc-sleep', sleeperPid],
        ['wc-loop', loopPid],
      ] as const) {
        expect(await n.call('state', { id })).toMatchObject({ status: 'running', pid });
        expect(processesMatching(`-name corral-${id} `)).toEqual([pid]); // the same QEMU, never restarted
      }

      // Output still arrives after the restart, in order, no line twice.
      await waitFor(() => lines.filter((l) => l.at > back).length >= 2, {
        timeoutMs: 30_000,
        what: 'two lines of wc-loop after the restart',
      });
      expect(lines.every((l, i) => i === 0 || l.n > lines[i - 1]!.n)).toBe(true);
      console.log(`wc-loop: lines ${lines.map((l) => l.n).join(',')}`);

      for (const id of ['wc-sleep', 'wc-loop']) {
        await n.call('kill', { id, signal: 'SIGKILL' });
        expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });
        expect(await n.call('delete', { id })).toMatchObject({ exitStatus: 137 });
      }
    } finally {
      sub.unsubscribe();
    }
  });

  it('a process that exits while the worker is down is reported with its exit status after re-attach', async () => {
    // The worker is killed right after the start and takes ~0.5-1.5 s to come back: the process exits meanwhile
    // (its EXIT waits in the guest, which sees no host). Timing-dependent, so only logged; the next test is exact.
    await sandbox('wc-exit', ['sh', '-c', 'sleep 0.3; exit 5']);
    await n.call('start', { id: 'wc-exit' });
    const k = await killWorker();
    const a = k.scan.adoption!.adopted.find((v) => v.sandboxId === 'wc-exit');
    console.log(`wc-exit ${a?.exited.length ? 'had exited' : 'was still running'} when the worker re-attached`);
    expect(await n.call('wait', { id: 'wc-exit' })).toMatchObject({ exitStatus: 5 });
    await n.call('delete', { id: 'wc-exit' });
  });

  it('an exit the dead worker had received but not published (it was frozen): the guest reports it again', async () => {
    const vmm = await sandbox('wc-frozen', ['sh', '-c', 'sleep 1; exit 5']);
    const agent = parseQemuCmdline(readFileSync(`/proc/${vmm}/cmdline`, 'utf8').split('\0'))!.agent!;
    await n.call('start', { id: 'wc-frozen' });
    // Frozen, the worker's socket takes the guest's EXIT; killed, that EXIT is lost with it. The guest keeps
    // the exit until a host ACKs it and reports it in its STATE to the restarted worker.
    const k = await killWorker(async (pid) => {
      process.kill(pid, 'SIGSTOP');
      // The guest sends nothing else once the process started: the first unread bytes are its EXIT.
      await waitFor(() => unreadBytes(pid, agent), {
        until: (b) => b > 0,
        timeoutMs: 30_000,
        intervalMs: 100,
        what: "wc-frozen's EXIT waiting unread in the frozen worker's agent socket",
      });
    });
    expect(k.scan.adoption!.adopted).toContainEqual(
      expect.objectContaining({
        sandboxId: 'wc-frozen',
        running: [],
        exited: [{ containerId: 'wc-frozen', status: 5 }],
      }),
    );
    expect(await n.call('wait', { id: 'wc-frozen' })).toMatchObject({ exitStatus: 5 });
    await n.call('delete', { id: 'wc-frozen' });
  });

  // One kill for both (the agent gives up on a worker restarted more than 5 times in 30 s).
  it(
    'VMs it cannot take over are reported: one that died while no worker watched, one whose QMP socket is gone; ' +
      'both sandboxes exit 255 and are torn down',
    async () => {
      const dead = await sandbox('wc-dead', ['sleep', '600']);
      const lost = await sandbox('wc-lost', ['sleep', '600']);
      await n.call('start', { id: 'wc-dead' });
      await n.call('start', { id: 'wc-lost' });
      const qmp = parseQemuCmdline(readFileSync(`/proc/${lost}/cmdline`, 'utf8').split('\0'))!.qmp;
      const k = await killWorker(async (worker) => {
        process.kill(worker, 'SIGSTOP'); // else it would notice the death itself
        process.kill(dead, 'SIGKILL');
        rmSync(qmp);
        await waitFor(() => processesMatching('-name corral-wc-dead ').length === 0, {
          what: "wc-dead's QEMU to be gone",
        });
      });
      expect(k.scan.adoption).toEqual({
        adopted: [],
        stopped: [{ sandboxId: 'wc-lost', pid: lost, reason: expect.stringMatching(/socket .* is gone/) }],
        dead: [{ sandboxId: 'wc-dead', pid: dead, reason: 'its QEMU exited while no worker watched it' }],
      });
      for (const id of ['wc-dead', 'wc-lost']) {
        expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 255 });
        expect(processesMatching(`-name corral-${id} `)).toEqual([]);
        await n.call('delete', { id });
      }
    },
  );
});
