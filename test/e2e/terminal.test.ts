/**
 * `corral run -t` and `corral exec -t` driven in a real terminal (tmux) as a person would: keys sent,
 * the screen read back. The prompt appears, `stty size` follows a resize, Ctrl-C ends a `sleep`.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MOUNTS, REPO, testNode, type TestNode } from '../helpers/node.ts';
import { killAllTerminals, terminal } from '../helpers/tmux.ts';

let n: TestNode;
const ids: string[] = [];
beforeAll(async () => {
  n = await testNode();
});
afterAll(async () => {
  killAllTerminals();
  await n?.cleanup();
});
afterEach(async () => {
  const these = ids.splice(0);
  await n.removeTasks(these);
  await n.expectNothingLeft(these);
});

/** The corral CLI with `args` in a terminal of its own. */
function corral(args: string[]) {
  const env = `NATS_URL=${n.env.NATS_URL} CORRAL_NODE=${n.env.CORRAL_NODE}`;
  const cli = `${process.execPath} --import tsx ${join(REPO, 'src/cli/main.ts')}`;
  return terminal(`cd ${REPO} && env ${env} ${cli} ${args.join(' ')}`, { tag: 'corral' });
}

describe('a terminal, as a person uses it', () => {
  it('corral run -t: prompt, stty size after a resize, Ctrl-C ends a sleep, exit ends it', async () => {
    const id = `tty-${randomBytes(4).toString('hex')}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sh'], env: ['PATH=/bin', 'PS1=corral$ '], mounts: DEFAULT_MOUNTS });
    const t = corral(['run', '-t', '--id', id, '--bundle', b, '--rm']);
    await t.seen(/^corral\$ ?$/m); // capture-pane trims trailing spaces
    t.keys('stty size', 'Enter');
    await t.seen(/^30 100$/m);
    t.resize(120, 40);
    t.keys('clear; stty size', 'Enter');
    await t.seen(/^40 120$/m);
    t.keys('sleep 600', 'Enter');
    await t.seen(/sleep 600\n?$/m);
    t.keys('C-c');
    t.keys('echo rc=$?', 'Enter');
    await t.seen(/^rc=130$/m);
    t.keys('tty', 'Enter');
    await t.seen(/^\/dev\/pts\/\d+$/m);
    t.keys('exit 4', 'Enter');
    await t.seen(/^corral-exit=4$/m);
    expect(t.screen()).not.toMatch(/corral: /); // no error from the CLI
  });

  it('corral exec -t into a running task gives a shell of its own', async () => {
    const id = `txe-${randomBytes(4).toString('hex')}`;
    ids.push(id);
    const b = n.bundle(id, { args: ['sleep', '600'], mounts: DEFAULT_MOUNTS });
    await n.call('create', { id, bundle: b });
    await n.call('start', { id });
    const t = corral(['exec', '-t', id, '--env', 'PS1=exec$\\ ', '--', 'sh']);
    await t.seen(/^exec\$ ?$/m);
    t.keys('echo inside-$((6*7)); tty', 'Enter');
    await t.seen(/^inside-42\n\/dev\/pts\/\d+$/m);
    t.keys('exit 0', 'Enter');
    await t.seen(/^corral-exit=0$/m);
    await n.call('kill', { id, signal: 'SIGKILL' });
    await n.call('wait', { id });
    await n.call('delete', { id });
  });
});
