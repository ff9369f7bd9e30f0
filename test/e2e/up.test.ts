/**
 * `corral up` as a user runs it: a local nats-server, the agent and workers come up; Ctrl-C (SIGINT)
 * tears down a running sandbox and stops every process, leaving nothing behind.
 */
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { mountsUnder, processesMatching, usersWithPrefix } from '../helpers/leaks.ts';
import { REPO } from '../helpers/node.ts';
import { within } from '../helpers/wait.ts';

const dir = mkdtempSync('/tmp/corral-up-');
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
  });

it('corral up serves a node; Ctrl-C stops everything and leaves nothing behind', async () => {
  const up = cli(['up', '--data-dir', dir, '--port', '0', '--node', 'uptest']);
  let stderr = '';
  up.stderr.on('data', (d) => (stderr += d));
  const url = await within(
    new Promise<string>((res, rej) => {
      up.stderr.on('data', () => {
        const m = /NATS_URL=(\S+)/.exec(stderr);
        if (m) res(m[1]!);
      });
      up.on('exit', (c) => rej(new Error(`up exited ${c}: ${stderr}`)));
    }),
    { timeoutMs: 60_000, what: () => `corral up to print NATS_URL (stderr: ${stderr})` },
  );
  const bundle = join(dir, 'bundles', 'sleeper');
  mkdirSync(bundle, { recursive: true });
  cpSync(join(REPO, 'examples/hello/rootfs'), join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(
    join(bundle, 'config.json'),
    JSON.stringify({
      process: { user: { uid: 0, gid: 0 }, args: ['sleep', '600'], cwd: '/' },
      root: { path: 'rootfs' },
      linux: { resources: {} },
    }),
  );
  const run = (args: string[]) =>
    new Promise<number>((res) => cli(args, { NATS_URL: url, CORRAL_NODE: 'uptest' }).on('exit', (c) => res(c ?? 1)));
  expect(await run(['create', 'upsb', '--bundle', bundle])).toBe(0);
  expect(await run(['start', 'upsb'])).toBe(0);
  expect(processesMatching('-name corral-upsb ')).toHaveLength(1);

  const exited = new Promise<number | null>((res) => up.on('exit', (c) => res(c)));
  up.kill('SIGINT');
  expect(await exited).toBe(0);
  expect(stderr).toContain('stopping');
  expect(processesMatching('-name corral-upsb ')).toEqual([]);
  expect(processesMatching(dir)).toEqual([]); // nats-server, agent and workers all carry the data dir
  expect(mountsUnder(dir)).toEqual([]);
  expect(usersWithPrefix('corral-')).toEqual([]);
});
