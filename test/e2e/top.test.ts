/**
 * `corral top` in a real terminal (tmux), as an operator watches it: a running sandbox appears with its
 * node's capacity use and the last minute's creates, and the screen updates when the sandbox exits; q quits.
 * `--once --json` gives the same frame to a script.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { killAllTerminals, terminal } from '../helpers/tmux.ts';

let n: TestNode;
beforeAll(async () => {
  n = await testNode({ simulate: true });
});
afterAll(async () => {
  killAllTerminals();
  await n?.cleanup();
});

describe('corral top', () => {
  it('shows a running sandbox, then its exit, refreshing in place; q quits', async () => {
    const id = 'top-demo';
    await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '600'] }) });
    await n.call('start', { id });
    const env = `NATS_URL=${n.env.NATS_URL} CORRAL_NODE=${n.env.CORRAL_NODE}`;
    const cli = `${process.execPath} --import tsx ${join(REPO, 'src/cli/main.ts')}`;
    const t = terminal(`cd ${REPO} && env ${env} ${cli} top --interval 500ms`, { cols: 140, tag: 'top' });
    await t.seen(new RegExp(`^NODE ${n.node}.*last 1m: 1 created, 0 failed$`, 'm'));
    await t.seen(/^ {2}top-demo +sandbox +top-demo +running +running /m);
    await n.call('kill', { id, signal: 9 });
    await t.seen(/^ {2}top-demo +sandbox +top-demo +stopped /m);
    const json = await n.cli(['top', '--once', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ nodes: [{ node: n.node, tasks: [{ id, status: 'stopped' }] }] });
    t.keys('q');
    await t.seen(/^top-exit=0$/m);
    await n.call('delete', { id });
  });
});
