/**
 * `corral run -t` and `corral exec -t` driven in a real terminal (tmux) as a person would: keys sent,
 * the screen read back. The prompt appears, `stty size` follows a resize, Ctrl-C ends a `sleep`.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MOUNTS, REPO, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
const ids: string[] = [];
const sessions: string[] = [];
beforeAll(async () => {
  n = await testNode();
});
afterAll(async () => {
  for (const s of sessions) tmux('kill-session', '-t', s, { ok: true });
  await n?.cleanup();
});
afterEach(async () => {
  const these = ids.splice(0);
  await n.removeTasks(these);
  await n.expectNothingLeft(these);
});

function tmux(...args: (string | { ok: true })[]): string {
  const ok = typeof args.at(-1) === 'object';
  const a = args.filter((x): x is string => typeof x === 'string');
  try {
    return execFileSync('tmux', a, { encoding: 'utf8' });
  } catch (e) {
    if (ok) return '';
    throw e;
  }
}
const screen = (s: string) => tmux('capture-pane', '-p', '-t', s);
const keys = (s: string, ...k: string[]) => tmux('send-keys', '-t', s, ...k);
const seen = (s: string, what: RegExp, timeoutMs = 60_000) =>
  waitFor(() => screen(s), { until: (t) => what.test(t), timeoutMs, intervalMs: 100, what: `${what} on screen` });

/** A detached tmux session of `cols`×`rows` running the corral CLI with `args`; `remain-on-exit` keeps the pane. */
function session(args: string[], cols = 100, rows = 30): string {
  const s = `corral-tty-${randomBytes(4).toString('hex')}`;
  sessions.push(s);
  const env = `NATS_URL=${n.env.NATS_URL} CORRAL_NODE=${n.env.CORRAL_NODE}`;
  const cli = `${process.execPath} --import tsx ${join(REPO, 'src/cli/main.ts')}`;
  const cmd = `cd ${REPO} && env ${env} ${cli} ${args.join(' ')}; echo corral-exit=$?; sleep 600`;
  tmux('new-session', '-d', '-s', s, '-x', String(cols), '-y', String(rows), cmd);
  return s;
}

describe('a terminal, as a person uses it', () => {
  it('corral run -t: prompt, stty size after a resize, Ctrl-C ends a sleep, exit ends it', async () => {
    const id = `tty-${randomBytes(4).toString('hex')}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sh'], env: ['PATH=/bin', 'PS1=corral$ '], mounts: DEFAULT_MOUNTS });
    const s = session(['run', '-t', '--id', id, '--bundle', b, '--rm']);
    await seen(s, /^corral\$ ?$/m); // capture-pane trims trailing spaces
    keys(s, 'stty size', 'Enter');
    await seen(s, /^30 100$/m);
    tmux('resize-window', '-t', s, '-x', '120', '-y', '40');
    keys(s, 'clear; stty size', 'Enter');
    await seen(s, /^40 120$/m);
    keys(s, 'sleep 600', 'Enter');
    await seen(s, /sleep 600\n?$/m);
    keys(s, 'C-c');
    keys(s, 'echo rc=$?', 'Enter');
    await seen(s, /^rc=130$/m);
    keys(s, 'tty', 'Enter');
    await seen(s, /^\/dev\/pts\/\d+$/m);
    keys(s, 'exit 4', 'Enter');
    await seen(s, /^corral-exit=4$/m);
    expect(screen(s)).not.toMatch(/corral: /); // no error from the CLI
  });

  it('corral exec -t into a running task gives a shell of its own', async () => {
    const id = `txe-${randomBytes(4).toString('hex')}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'], mounts: DEFAULT_MOUNTS });
    await n.call('create', { id, bundle: b });
    await n.call('start', { id });
    const s = session(['exec', '-t', id, '--env', 'PS1=exec$\\ ', '--', 'sh']);
    await seen(s, /^exec\$ ?$/m);
    keys(s, 'echo inside-$((6*7)); tty', 'Enter');
    await seen(s, /^inside-42\n\/dev\/pts\/\d+$/m);
    keys(s, 'exit 0', 'Enter');
    await seen(s, /^corral-exit=0$/m);
    await n.call('kill', { id, signal: 'SIGKILL' });
    await n.call('wait', { id });
    await n.call('delete', { id });
  });
});
