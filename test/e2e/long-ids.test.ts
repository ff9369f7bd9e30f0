/**
 * Ids as containerd and CRI make them (64 hex characters) and as long as the id rule allows (128), on
 * real QEMU guests: create, start, output, kill, delete, nothing left. Socket names use a short hash of
 * the id (qemu-args.ts `vmPaths`); QEMU's `-name`, the VMM user's comment, events and subjects carry the
 * full id, so a scan still maps a QEMU back to its sandbox.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../src/bus/subjects.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode();
});
afterAll(async () => {
  await n?.cleanup();
});
afterEach(async () => {
  await n.expectNothingLeft(ids);
});

const hex64 = () => randomBytes(32).toString('hex');
/** 128 characters, every kind the id rule allows. */
const id128 = () =>
  `A${randomBytes(48)
    .toString('base64url')
    .replace(/[^A-Za-z0-9]/g, '_')}.x-${hex64()}`.slice(0, 128);

/** The stdout of container `cid`, as it arrives. */
function stdoutOf(cid: string) {
  let text = '';
  const sub = n.nc.subscribe(subjects.io(n.node, cid, 'stdout'), {
    callback: (e, m) => {
      if (!e) text += Buffer.from(m.data).toString();
    },
  });
  return { text: () => text, close: () => sub.unsubscribe() };
}

/** create, start, see its output, SIGKILL, wait (137), delete. */
async function lifecycle(id: string, body: Record<string, unknown> = {}, created?: (vmmPid: number) => void) {
  ids.push(id);
  const b = n.bundle(`b${ids.length}`, { args: ['sh', '-c', 'echo out-ok; exec sleep 600'] });
  const { pid } = await n.call<{ pid: number }>('create', { id, bundle: b, ...body });
  // The QEMU carries the full id: scans, adoption and reconcile map it back to the sandbox.
  expect(processesMatching(`-name corral-${id} `)).toEqual([pid]);
  created?.(pid);
  const out = stdoutOf(id);
  try {
    await n.call('start', { id });
    await waitFor(() => out.text(), { until: (t) => t.includes('out-ok\n'), timeoutMs: 30_000, what: 'its output' });
  } finally {
    out.close();
  }
  await n.call('kill', { id, signal: 9 });
  expect(await n.call('wait', { id, timeoutMs: 30_000 })).toMatchObject({ exitStatus: 137 });
  await n.call('delete', { id });
  // No socket or log of it is left in the VM dir.
  const vmDir = join(n.dataDir, 'run/vm');
  expect(existsSync(vmDir) ? readdirSync(vmDir) : []).toEqual([]);
  return pid;
}

describe('long ids on real guests', () => {
  it('a 64-hex id (containerd, CRI) runs, is killed and deleted, and leaves nothing', async () => {
    const id = hex64();
    await lifecycle(id);
    const events = await n.cli(['events', '--sandbox', id, '--json']);
    expect(events.code).toBe(0);
    expect(events.stdout).toContain(`"${id}"`); // the full id in the event log
  });

  it('a 128-character id, the longest the id rule allows, runs and leaves nothing', async () => {
    const id = id128();
    expect(id).toHaveLength(128);
    await lifecycle(id);
  });

  it('a 128-character id with a rootless VMM: the user comment carries the full id', async () => {
    const cfg = join(n.configs, 'rootless.toml');
    writeFileSync(
      cfg,
      localRuntimeConfig(join(REPO, '.corral/guest')).replace(
        '[hypervisor.qemu]',
        '[hypervisor.qemu]\nrootless = true',
      ),
    );
    const id = id128();
    await lifecycle(id, { options: { configPath: cfg } }, (pid) => {
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
      const gecos = execFileSync('getent', ['passwd', uid], { encoding: 'utf8' }).split(':')[4];
      expect(gecos).toBe(`Corral temporary hypervisor user of sandbox ${id} on ${n.node}`);
    });
  });

  it('a pod: a 64-hex container in a 64-hex sandbox', async () => {
    const sid = hex64();
    const cid = hex64();
    ids.push(sid);
    const pod = (name: string, type: string, args: string[]) =>
      n.bundle(name, {
        args,
        annotations: { 'io.kubernetes.cri.container-type': type, 'io.kubernetes.cri.sandbox-id': sid },
      });
    const sb = pod('podsb', 'sandbox', ['sleep', '600']);
    const app = pod('podapp', 'container', ['sh', '-c', 'echo app-ok; exit 4']);
    const { pid } = await n.call<{ pid: number }>('create', { id: sid, bundle: sb });
    await n.call('start', { id: sid });
    const r = await n.cli(['run', '--id', cid, '--bundle', app, '--rm']);
    expect(r.stdout).toContain('app-ok');
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`(pid ${pid})`);
    await n.call('kill', { id: sid, signal: 9 });
    await n.call('wait', { id: sid, timeoutMs: 30_000 });
    await n.call('delete', { id: sid });
  });
});
