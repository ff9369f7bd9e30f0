/**
 * The workload a real container needs, end to end (issue 8): stdin, execs, pause/resume, limits, OOM,
 * stats and update, through the CLI and the Task API, with real QEMU guests. Nothing may be left after
 * each scenario.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { subjects } from '../../src/bus/subjects.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { DEFAULT_MOUNTS, testNode, type TestNode } from '../helpers/node.ts';
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
  // A test that failed half way leaves its task: removed as a user would, so the next test starts clean.
  const these = ids.splice(0);
  await n.removeTasks(these);
  await n.expectNothingLeft(these);
});

const sha = (s: string | Uint8Array) => createHash('sha256').update(s).digest('hex');
/** Resident memory of a process, in MiB (VmRSS). */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const hypervisorWorker = () => processesMatching('worker hypervisor').find((p) => cmdline(p).includes(n.node))!;
const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
const sh = (script: string) => ['sh', '-c', script];

/** Creates and starts a task running `args`; returns its id. */
async function running(
  name: string,
  args: string[],
  resources?: Record<string, unknown>,
  mounts: typeof DEFAULT_MOUNTS = [],
): Promise<string> {
  const id = `${name}-${randomBytes(4).toString('hex')}`;
  ids.push(id);
  const b = n.bundle(id, { args, resources, mounts: [...DEFAULT_MOUNTS, ...mounts] });
  await n.call('create', { id, bundle: b });
  await n.call('start', { id });
  return id;
}
async function gone(id: string) {
  await n.call('kill', { id, signal: 'SIGKILL' }).catch(() => undefined);
  await n.call('wait', { id });
  await n.call('delete', { id });
}
/** Collects a process's stdout subject into a string. */
function output(id: string, execId?: string) {
  let text = '';
  const sub = n.nc.subscribe(
    execId ? subjects.execIo(n.node, id, execId, 'stdout') : subjects.io(n.node, id, 'stdout'),
    {
      callback: (e, m) => {
        if (!e) text += Buffer.from(m.data).toString();
      },
    },
  );
  return { text: () => text, close: () => sub.unsubscribe() };
}

describe('stdin', () => {
  it('`printf abc | corral run -i ... cat` prints abc', async () => {
    const b = n.bundle('cat-abc', { args: ['cat'] });
    ids.push('cat-abc');
    const r = await n.cli(['run', '-i', '--id', 'cat-abc', '--bundle', b, '--rm'], {}, 'abc');
    expect(r.stdout).toBe('abc');
    expect(r.code).toBe(0);
  });

  it('100 MB through cat arrive intact; a process that reads nothing holds the sender back', async () => {
    const input = randomBytes(50 << 20).toString('hex'); // 100 MiB of text
    // cat starts once /go exists: until then nothing reads its stdin.
    const b = n.bundle('cat-big', { args: sh('until [ -e /go ]; do sleep 0.05; done; exec cat') });
    ids.push('cat-big');
    let onWire = 0;
    const tap = n.nc.subscribe(subjects.stdin(n.node, 'cat-big'), {
      callback: (_e, m) => {
        onWire += m.data.length;
      },
    });
    const agent = n.agent.pid!;
    const worker = hypervisorWorker();
    const before = { agent: rssMiB(agent), worker: rssMiB(worker) };
    let peak = { ...before };
    const sampler = setInterval(() => {
      peak = { agent: Math.max(peak.agent, rssMiB(agent)), worker: Math.max(peak.worker, rssMiB(worker)) };
    }, 50);
    const t0 = performance.now();
    const run = n.cli(['run', '-i', '--id', 'cat-big', '--bundle', b, '--rm'], {}, input).finally(() => {
      clearInterval(sampler);
      tap.unsubscribe();
    });
    // Back-pressure end to end: with nothing reading, the CLI sends the guest's window, the pipe's 64 KiB
    // and the chunks in flight (about 1 MiB), then waits; a second later it still has sent no more.
    await waitFor(() => onWire >= 256 << 10, { timeoutMs: 60_000, what: () => `stdin on the wire (${onWire} B)` });
    const stalledAt = Date.now();
    await waitFor(() => Date.now() - stalledAt > 1000, { intervalMs: 100, what: 'a second of nobody reading' });
    const held = onWire;
    expect(held).toBeLessThan(2 << 20);
    writeFileSync(join(n.bundles, 'cat-big/rootfs/go'), '');
    const r = await run;
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(input.length);
    expect(sha(r.stdout)).toBe(sha(input));
    console.log(
      `100 MiB through cat in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(held / 1024).toFixed(0)} KiB ` +
        `sent while nothing read): agent RSS ${before.agent.toFixed(0)} → peak ${peak.agent.toFixed(0)} MiB, ` +
        `hypervisor worker ${before.worker.toFixed(0)} → peak ${peak.worker.toFixed(0)} MiB`,
    );
    // Neither holds the stream (100 MiB would show); what growth there is, is garbage not yet collected.
    expect(peak.worker - before.worker).toBeLessThan(100);
    expect(peak.agent - before.agent).toBeLessThan(100);
  });
});

describe('exec', () => {
  it('exits with its code, its output arrives, and it is deleted', async () => {
    const id = await running('ex', ['sleep', '600']);
    const r = await n.cli(['exec', id, '--', 'sh', '-c', 'echo out-of-exec; exit 5']);
    expect(r.stdout).toBe('out-of-exec\n');
    expect(r.code).toBe(5);
    await gone(id);
  });

  it('kill --exec-id ends the exec only; state, wait and delete take the exec id', async () => {
    const id = await running('exk', ['sleep', '600']);
    await n.call('exec', { id, execId: 'e1', spec: { args: ['sleep', '600'], env: ['PATH=/bin'] } });
    expect(await n.call('state', { id, execId: 'e1' })).toMatchObject({ status: 'created' });
    const started = await n.call<{ pid: number }>('start', { id, execId: 'e1' });
    expect(started.pid).toBeGreaterThan(0);
    expect(await n.call('state', { id, execId: 'e1' })).toMatchObject({ status: 'running' });
    await expect(n.call('delete', { id, execId: 'e1' })).rejects.toMatchObject({ code: 'FailedPrecondition' });
    const r = await n.cli(['kill', id, '--exec-id', 'e1', '--signal', 'KILL']);
    expect(r.code).toBe(0);
    expect(await n.call('wait', { id, execId: 'e1' })).toMatchObject({ exitStatus: 137 });
    expect(await n.call('state', { id })).toMatchObject({ status: 'running' });
    expect(await n.call('delete', { id, execId: 'e1' })).toMatchObject({ exitStatus: 137 });
    await expect(n.call('state', { id, execId: 'e1' })).rejects.toMatchObject({ code: 'NotFound' });
    await expect(n.call('exec', { id, execId: 'bad/id', spec: { args: ['true'] } })).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
    await gone(id);
  });

  it('an exec with -i reads its stdin', async () => {
    const id = await running('exi', ['sleep', '600']);
    const r = await n.cli(['exec', '-i', id, '--', 'sh', '-c', 'tr a-z A-Z'], {}, 'hello exec\n');
    expect(r.stdout).toBe('HELLO EXEC\n');
    expect(r.code).toBe(0);
    await gone(id);
  });
});

describe('pause, resume, limits, stats', () => {
  it("pause stops a ticking process's output, resume continues it; state shows paused between", async () => {
    const id = await running('tick', sh('i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done'));
    const out = output(id);
    await waitFor(() => out.text().split('\n').length > 3, { timeoutMs: 30_000, what: 'ticks' });
    await n.call('pause', { id });
    expect(await n.call('state', { id })).toMatchObject({ status: 'paused' });
    const frozen = out.text();
    // Frozen: a round trip to the guest (stats) later, and a few tick periods later, nothing new.
    await n.call('stats', { id });
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 > 500, { timeoutMs: 2000, intervalMs: 50, what: '5 tick periods' });
    expect(out.text()).toBe(frozen);
    await n.call('resume', { id });
    expect(await n.call('state', { id })).toMatchObject({ status: 'running' });
    await waitFor(() => out.text().length > frozen.length, { timeoutMs: 10_000, what: 'ticks after resume' });
    out.close();
    await gone(id);
  });

  it('a process over its memory limit is OOM-killed: oom fact, then exit 137', async () => {
    const id = await running('oom', sh('x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo never'), {
      memory: { limit: 32 << 20 },
    });
    expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 137 });
    const kinds = await factKinds(id);
    expect(kinds.indexOf('oom')).toBeGreaterThan(-1);
    expect(kinds.indexOf('oom')).toBeLessThan(kinds.indexOf('exited'));
    await n.call('delete', { id });
  });

  it('stats show the memory of a process that holds 64 MB', async () => {
    // 64 MiB in a tmpfs: its pages are charged to the container's memory cgroup.
    const tmpfs = { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['size=128m'] };
    const id = await running('mem', sh('head -c 67108864 /dev/zero > /t/f && echo held; exec sleep 600'), undefined, [
      tmpfs,
    ]);
    const out = output(id);
    await waitFor(() => out.text().includes('held'), { timeoutMs: 60_000, what: 'the 64 MB to be held' });
    const s = await n.call<{ memory: { usage: number }; pids: { current: number } }>('stats', { id });
    expect(s.memory.usage).toBeGreaterThanOrEqual(64 << 20);
    expect(s.pids.current).toBe(1);
    out.close();
    await gone(id);
  });

  it('update lowers the pids limit and a fork loop stops at it', async () => {
    const id = await running('pids', ['sleep', '600']);
    await n.cli(['update', id, '--pids', '8']).then((r) => expect(r.code).toBe(0));
    const s = await n.call<{ pids: { limit: number } }>('stats', { id });
    expect(s.pids.limit).toBe(8);
    const r = await n.cli(['exec', id, '--', 'sh', '-c', 'n=0; while [ $n -lt 30 ]; do sleep 60 & n=$((n+1)); done']);
    expect(r.stderr + r.stdout).toMatch(/fork|Resource temporarily unavailable|can't fork/i);
    const after = await n.call<{ pids: { current: number } }>('stats', { id });
    expect(after.pids.current).toBeLessThanOrEqual(8);
    await gone(id);
  });
});

async function factKinds(id: string): Promise<string[]> {
  const r = await n.cli(['events', '--sandbox', id, '--json']);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { kind: string }).kind);
}
