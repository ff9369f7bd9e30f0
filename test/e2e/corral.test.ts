/**
 * End to end through real NATS, a real agent with its real workers, real mounts and real QEMU guests
 * (TCG here). After every scenario nothing may be left: no mount under the node's dirs, no QEMU
 * process, no temporary user, no /run/user dir, no sandbox dir.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { toRecords } from '../../src/bus/eventlog-reader.ts';
import { EVENTS_STREAM, subjects } from '../../src/bus/subjects.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
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

describe('corral run through NATS and a QEMU guest', () => {
  it('prints the guest process output (examples/hello) and exits 0', async () => {
    const hello = n.bundle('hello', { args: ['sh', '-c', 'echo "hello from $(uname -r)"; echo to-stderr >&2'] });
    ids.push('hello1');
    const r = await n.cli(['run', '--id', 'hello1', '--bundle', hello, '--rm']);
    expect(r.stderr).toContain('to-stderr');
    expect(r.stdout).toMatch(/^hello from 6\.1\.\d+-\d+-amd64$/m); // the guest's kernel, not the host's
    expect(r.code).toBe(0);
  });

  it("`sh -c 'exit 3'` makes corral run exit 3", async () => {
    const b = n.bundle('exit3', { args: ['sh', '-c', 'exit 3'] });
    ids.push('exit3');
    const r = await n.cli(['run', '--id', 'exit3', '--bundle', b, '--rm']);
    expect(r.code).toBe(3);
  });

  it('applies uid, gid, env and cwd from config.json', async () => {
    const b = n.bundle('ids', {
      args: ['sh', '-c', 'echo "$(id -u):$(id -g):$FOO:$(pwd)"'],
      uid: 1234,
      gid: 567,
      env: ['PATH=/bin', 'FOO=bar=baz'],
      cwd: '/tmp',
    });
    ids.push('ids');
    const r = await n.cli(['run', '--id', 'ids', '--bundle', b, '--rm']);
    expect(r.stdout.trim()).toBe('1234:567:bar=baz:/tmp');
  });

  it('kill gives 128+signal (SIGKILL 137), with the lifecycle facts in containerd order', async () => {
    const b = n.bundle('sleeper', { args: ['sleep', '600'] });
    ids.push('sleeper');
    const created = await n.call<{ pid: number }>('create', { id: 'sleeper', bundle: b });
    expect(created.pid).toBeGreaterThan(0);
    expect((await n.call('state', { id: 'sleeper' })).status).toBe('created');
    await n.call('start', { id: 'sleeper' });
    expect(await n.call('pids', { id: 'sleeper' })).toEqual({ pids: [{ pid: created.pid }] });
    await n.call('kill', { id: 'sleeper', signal: 'SIGKILL' });
    expect(await n.call('wait', { id: 'sleeper' })).toMatchObject({ exitStatus: 137 });
    const del = await n.call('delete', { id: 'sleeper' });
    expect(del).toMatchObject({ exitStatus: 137, pid: created.pid });
    await expect(n.call('state', { id: 'sleeper' })).rejects.toMatchObject({ code: 'NotFound' });

    // The event log: facts in order, and every input written before the fact it caused.
    const js = jetstream(n.nc);
    const c = await js.consumers.get(EVENTS_STREAM, { filter_subjects: subjects.evt(n.node, 'sleeper', '>') });
    const kinds: string[] = [];
    for (;;) {
      const m = await c.next({ expires: 2000 });
      if (!m) break;
      kinds.push(...toRecords(m.seq, m.subject, m.data).map((r) => r.kind)); // a shared message holds several
    }
    expect(kinds.filter((k) => ['created', 'started', 'exited', 'deleted'].includes(k))).toEqual([
      'created',
      'started',
      'exited',
      'deleted',
    ]);
    expect(kinds[0]).toBe('input');
    expect(kinds.indexOf('input')).toBeLessThan(kinds.indexOf('created'));
  });

  it('SIGTERM gives 143', async () => {
    const b = n.bundle('term', { args: ['sleep', '600'] });
    ids.push('term');
    await n.call('create', { id: 'term', bundle: b });
    await n.call('start', { id: 'term' });
    await n.call('kill', { id: 'term', signal: 15 });
    expect(await n.call('wait', { id: 'term' })).toMatchObject({ exitStatus: 143 });
    await n.call('delete', { id: 'term' });
  });

  it('kill reaches every process of the container (Kata signals init with all)', async () => {
    // The main shell ignores SIGTERM (its child, started before the trap, does not) and exits 7 once the
    // child is gone. Signalled alone, the shell would go on forever; signalled as a group, the child dies.
    const script =
      'sleep 600 & p=$!; trap "" TERM; echo > /trapped; while kill -0 $p 2>/dev/null; do sleep 0.1; done; exit 7';
    const b = n.bundle('termall', { args: ['sh', '-c', script] });
    // The example rootfs has no /dev; a shell gives a background job /dev/null as its stdin.
    mkdirSync(join(b, 'rootfs', 'dev'), { recursive: true });
    writeFileSync(join(b, 'rootfs', 'dev', 'null'), '');
    ids.push('termall');
    await n.call('create', { id: 'termall', bundle: b });
    await n.call('start', { id: 'termall' });
    // The trap is set once the shell says so (a file in its rootfs, written over 9p).
    await waitFor(() => existsSync(join(b, 'rootfs', 'trapped')), { timeoutMs: 20_000, what: 'the trap set' });
    await n.call('kill', { id: 'termall', signal: 15, all: true });
    expect(await n.call('wait', { id: 'termall', timeoutMs: 20_000 })).toMatchObject({ exitStatus: 7 });
    await n.call('delete', { id: 'termall' });
  });

  it('runs a pod: a sandbox and two containers in one guest (examples/pod)', async () => {
    const pod = (name: string, type: string, args: string[]) =>
      n.bundle(name, {
        args,
        annotations: { 'io.kubernetes.cri.container-type': type, 'io.kubernetes.cri.sandbox-id': 'pod1' },
      });
    const sb = pod('pod1', 'sandbox', ['sleep', '600']);
    const a1 = pod('app1', 'container', [
      'sh',
      '-c',
      'echo app1 on $(cat /proc/sys/kernel/random/boot_id 2>/dev/null || uname -r); exit 1',
    ]);
    const a2 = pod('app2', 'container', [
      'sh',
      '-c',
      'echo app2 on $(cat /proc/sys/kernel/random/boot_id 2>/dev/null || uname -r); exit 2',
    ]);
    ids.push('pod1');
    const { pid } = await n.call<{ pid: number }>('create', { id: 'pod1', bundle: sb });
    await n.call('start', { id: 'pod1' });
    const r1 = await n.cli(['run', '--id', 'app1', '--bundle', a1, '--rm']);
    const r2 = await n.cli(['run', '--id', 'app2', '--bundle', a2, '--rm']);
    expect([r1.code, r2.code]).toEqual([1, 2]);
    // Same guest: both report the same boot, and the task pid of each is the sandbox's VMM pid.
    const boot1 = r1.stdout.trim().split(' on ')[1];
    expect(boot1).toBeTruthy();
    expect(r2.stdout.trim().split(' on ')[1]).toBe(boot1);
    expect(r1.stderr).toContain(`(pid ${pid})`);
    expect((await n.call<{ tasks: unknown[] }>('list', {})).tasks).toHaveLength(1);
    await expect(n.call('shutdown', {})).rejects.toMatchObject({
      code: 'FailedPrecondition',
      message: expect.stringContaining('still holds 1 task'),
    });
    await n.call('kill', { id: 'pod1', signal: 9 });
    await n.call('wait', { id: 'pod1' });
    await n.call('delete', { id: 'pod1' });
  });

  it('a second create of an existing id is AlreadyExists, and the first is untouched', async () => {
    const b = n.bundle('dup', { args: ['sleep', '600'] });
    ids.push('dup');
    await n.call('create', { id: 'dup', bundle: b });
    await expect(n.call('create', { id: 'dup', bundle: b })).rejects.toMatchObject({ code: 'AlreadyExists' });
    expect((await n.call('state', { id: 'dup' })).status).toBe('created');
    await n.call('delete', { id: 'dup' });
  });

  it('serves Prometheus metrics of create latency by step', async () => {
    const text = await (await fetch(n.metricsUrl)).text();
    expect(text).toMatch(/corral_create_duration_seconds_count\{outcome="ok"\} [1-9]/);
    expect(text).toMatch(/corral_create_step_duration_seconds_count\{step="boot",outcome="ok"\} [1-9]/);
    expect(text).toContain('# TYPE corral_tasks_by_status gauge');
    expect(text).toMatch(/^corral_recoveries_total 1$/m);
    expect(text).toContain('corral_leaks_found_total 0');
  });
});

void REPO;

describe('replay', () => {
  it('rebuilds every sandbox this node ran from its log, with exactly the recorded states', async () => {
    const { readRecords } = await import('../../src/bus/eventlog-reader.ts');
    const { replay } = await import('../../src/replay/engine.ts');
    const records = await readRecords(n.nc, { node: n.node });
    const bySandbox = new Map<string, typeof records>();
    for (const r of records) bySandbox.set(r.sandbox, [...(bySandbox.get(r.sandbox) ?? []), r]);
    expect(bySandbox.size).toBeGreaterThanOrEqual(7);
    for (const [sandbox, recs] of bySandbox) {
      const r = await replay(recs);
      expect(r.divergence, `sandbox ${sandbox}`).toBeUndefined();
      expect(r.inputs).toBeGreaterThan(5);
      for (const t of r.tasks) {
        const states = recs.filter((x) => x.kind === 'state' && x.taskId === t.taskId);
        expect(JSON.stringify(t.actor.getSnapshot().value)).toBe(JSON.stringify(states[states.length - 1]!.value));
        t.actor.stop();
      }
    }
  });
});
