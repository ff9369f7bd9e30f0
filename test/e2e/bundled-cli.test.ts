/**
 * The `corral` command as users run it: bin/corral.mjs, which takes dist/bundle/ while it is current
 * (bin/dist.mjs). Every other CLI test runs src/ through tsx, so the bundle's own risks (a path found from a
 * module's location, a command module loaded lazily from a chunk, a native module outside the bundle) are
 * checked here, with simulated VMs: create, start, ps, events, replay with its HTML page, delete.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { entry } from '../../bin/dist.mjs';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';

let n: TestNode;
const ID = 'b'.repeat(64);

beforeAll(async () => {
  execFileSync(process.execPath, [join(REPO, 'infra/scripts/build.mjs'), '--if-stale'], { stdio: 'ignore' });
  n = await testNode({ simulate: true });
});
afterAll(() => n?.cleanup());

const corral = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((res) => {
    const p = spawn(process.execPath, [join(REPO, 'bin/corral.mjs'), ...args], { cwd: REPO, env: n.env });
    p.stdin.end();
    let stdout = '',
      stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => res({ code: code ?? 1, stdout, stderr }));
  });

it('runs a sandbox through the bundle: create, start, ps, events, replay --html, delete; nothing left', async () => {
  // What bin/corral.mjs decides, before and after the commands: the bundle, or this test proves nothing.
  expect(entry(REPO, n.env)).toMatchObject({ compiled: true, main: join(REPO, 'dist/bundle/cli-main.js') });
  const b = n.bundle('bundled', { args: ['sleep', '30'] });
  for (const args of [
    ['create', ID, '--bundle', b],
    ['start', ID],
  ]) {
    const r = await corral(args);
    expect(r.code, r.stderr).toBe(0);
  }
  const ps = await corral(['ps', '--json']);
  expect(ps.code, ps.stderr).toBe(0);
  expect((JSON.parse(ps.stdout) as { tasks: { id: string; status: string }[] }).tasks).toContainEqual(
    expect.objectContaining({ id: ID, status: 'running' }),
  );
  const events = await corral(['events', '--sandbox', ID, '--json']);
  expect(events.code, events.stderr).toBe(0);
  const kinds = events.stdout
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { kind: string }).kind);
  expect(kinds).toEqual(expect.arrayContaining(['input', 'state', 'created', 'started']));
  const html = join(n.dataDir, 'replay.html');
  const replay = await corral(['replay', ID, '--html', html]);
  expect(replay.code, replay.stderr).toBe(0);
  expect(readFileSync(html, 'utf8')).toContain(ID);
  for (const args of [
    ['kill', ID, '--signal', 'SIGKILL'],
    ['wait', ID],
    ['delete', ID],
  ]) {
    const r = await corral(args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  }
  expect(entry(REPO, n.env).compiled).toBe(true);
  await n.expectNothingLeft([ID]);
});
