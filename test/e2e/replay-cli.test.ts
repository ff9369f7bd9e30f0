/**
 * `corral events` and `corral replay` as a user runs them, against the log of a real sandbox (one QEMU
 * guest booted once): the lifecycle facts in order, --since, --follow, an export replayed with NATS
 * pointing nowhere, a tampered export naming its seq, and the HTML page.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLog } from '../../src/bus/eventlog.ts';
import { readRecords, type EventRecord } from '../../src/bus/eventlog-reader.ts';
import { readRecordsFile } from '../../src/replay/records.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ID = 'rp1';
const NOWHERE = { NATS_URL: 'nats://127.0.0.1:1' };
const LIFECYCLE = ['created', 'started', 'exited', 'deleted'];
let exported: string;

beforeAll(async () => {
  n = await testNode();
  const b = n.bundle(ID, { args: ['sh', '-c', 'echo replay me; exit 3'] });
  const run = await n.cli(['run', '--id', ID, '--bundle', b, '--rm']);
  expect(run.code, run.stderr).toBe(3);
  // Facts and state records are appended asynchronously: wait for the last ones.
  await waitFor(
    async () => (await readRecords(n.nc, { sandbox: ID })).some((r) => r.kind === 'state' && r.value === 'deleted'),
    { timeoutMs: 30_000, intervalMs: 100, what: `the state record "deleted" of ${ID} in the log` },
  );
  exported = join(n.dataDir, `${ID}.jsonl`);
});
afterAll(async () => {
  await n?.cleanup();
});

const jsonLines = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as EventRecord);

describe('corral events', () => {
  it('--sandbox X --json lists its records in stream order, created/started/exited/deleted among them', async () => {
    const r = await n.cli(['events', '--sandbox', ID, '--json']);
    expect(r.code).toBe(0);
    const recs = jsonLines(r.stdout);
    expect(recs.every((x) => x.sandbox === ID && x.node === n.node)).toBe(true);
    expect(recs.map((x) => x.seq)).toEqual([...recs.map((x) => x.seq)].sort((a, b) => a - b));
    expect(recs.map((x) => x.kind).filter((k) => LIFECYCLE.includes(k))).toEqual(LIFECYCLE);
    expect(recs[0]).toMatchObject({ kind: 'input', event: { type: 'create' } });

    const human = await n.cli(['events', '--sandbox', ID, '--node', n.node]);
    expect(human.stdout.trim().split('\n')).toHaveLength(recs.length);
    expect(human.stdout).toMatch(new RegExp(`${n.node}\\s+${ID}\\s+${ID}\\s+input\\s+boot ok: pid=\\d+`));
    expect(human.stdout).toMatch(/exited\s+pid=\d+ exitStatus=3/);

    const started = recs.find((x) => x.kind === 'started')!.seq;
    const since = jsonLines((await n.cli(['events', '--sandbox', ID, '--since', String(started), '--json'])).stdout);
    expect(since[0]!.seq).toBe(started);
    expect(jsonLines((await n.cli(['events', '--sandbox', ID, '--since', '10m', '--json'])).stdout)).toHaveLength(
      recs.length,
    );
    expect((await n.cli(['events', '--since', 'soon'])).code).toBe(2);
  });

  it('--follow prints the past, then records as they are appended, until Ctrl-C', async () => {
    const log = new EventLog(n.nc, n.node);
    await log.append('follow1', 'created', { taskId: 'follow1', pid: 1 });
    const p = spawn(
      process.execPath,
      ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), 'events', '--sandbox', 'follow1', '--follow', '--json'],
      { cwd: REPO, env: n.env },
    );
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    await waitFor(() => out.includes('"pid":1'), { timeoutMs: 15_000, what: 'the past record (pid 1) printed' });
    // Another sandbox's record, then one of follow1: once the later one is printed, the other one was
    // seen and left out (the log is read in order).
    await log.append('other', 'started', { taskId: 'other', pid: 3 });
    await log.append('follow1', 'started', { taskId: 'follow1', pid: 2 });
    await waitFor(() => out.includes('"pid":2'), { timeoutMs: 10_000, what: 'the appended record (pid 2) printed' });
    const code = new Promise<number | null>((res) => p.on('exit', res));
    p.kill('SIGINT');
    expect(await code).toBe(0);
    expect(jsonLines(out).map((x) => [x.kind, x.pid])).toEqual([
      ['created', 1],
      ['started', 2],
    ]);
  });
});

describe('corral replay', () => {
  it('events export, then replay --file with NATS pointing nowhere: exit 0 and the timeline', async () => {
    const e = await n.cli(['events', 'export', '--sandbox', ID, '-o', exported]);
    expect(e.code).toBe(0);
    const count = readRecordsFile(exported).length;
    expect(e.stdout.trim()).toBe(`exported ${count} records of sandbox ${ID} to ${exported}`);

    const r = await n.cli(['replay', ID, '--file', exported], NOWHERE);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/worker:hypervisor\s+effect boot ok: pid=\d+ \([\d.]+ (ms|s)\) {2}→ created/);
    expect(out).toMatch(/sandbox\s+request start\s+→ starting/);
    expect(out).toMatch(/state running\.idle ✓/);
    expect(out).toMatch(/fact deleted .*exitStatus=3/);
    expect(out).toMatch(
      new RegExp(
        `task ${ID} \\(sandbox\\): deleted, visited validating → configuring → mounting → .*booting → created → ` +
          `starting → running\\.idle → stopping → deleted`,
      ),
    );
    expect(out.trim().split('\n').at(-1)).toMatch(
      /^ok: \d+ inputs replayed up to seq \d+; \d+ rebuilt states equal the recorded ones$/,
    );

    const j = await n.cli(['replay', ID, '--file', exported, '--json'], NOWHERE);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toMatchObject({
      sandbox: ID,
      ok: true,
      divergence: null,
      tasks: [{ taskId: ID, machine: 'sandbox', state: 'deleted' }],
    });

    // The same from NATS, and --until stopping at the `created` state.
    expect((await n.cli(['replay', ID])).code).toBe(0);
    const created = readRecordsFile(exported).find((x) => x.kind === 'state' && x.value === 'created')!.seq;
    const u = await n.cli(['replay', ID, '--file', exported, '--until', String(created)], NOWHERE);
    expect(u.code).toBe(0);
    expect(u.stdout).toMatch(new RegExp(`task ${ID} \\(sandbox\\): created, `));
    expect(u.stdout).toContain(`up to seq ${created};`);
  });

  it('a tampered export (one recorded state changed) exits 1 naming that seq', async () => {
    const recs = readRecordsFile(exported);
    const k = recs.findIndex((x) => x.kind === 'state' && x.value === 'starting');
    const tampered = join(n.dataDir, 'tampered.jsonl');
    writeFileSync(tampered, recs.map((x, i) => JSON.stringify(i === k ? { ...x, value: 'created' } : x)).join('\n'));
    const r = await n.cli(['replay', ID, '--file', tampered], NOWHERE);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `corral: replay diverged at seq ${recs[k]!.seq} (task ${ID}): recorded state created, rebuilt starting`,
    ]);
  });

  it('--html writes a self-contained page', async () => {
    const page = join(n.dataDir, `${ID}.html`);
    const r = await n.cli(['replay', ID, '--file', exported, '--html', page], NOWHERE);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^wrote ${page} \\(\\d+ entries, \\d+ KiB\\)`));
    expect(existsSync(page)).toBe(true);
    const html = readFileSync(page, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<svg class="chart"');
    for (const lane of ['sandbox', 'agent', 'worker:mount', 'worker:hypervisor'])
      expect(html).toContain(`data-lane="${lane}"`);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//); // nothing loaded from anywhere
  });
});
