/**
 * Bad input on every subject gets one clear error reply, and the agent and workers keep serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../src/bus/codec.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { NOTHING_LEFT, testNode, type TestNode } from '../helpers/node.ts';

let n: TestNode;
beforeAll(async () => {
  n = await testNode();
});
afterAll(async () => {
  await n?.cleanup();
});

/** Send raw bytes; return the decoded error envelope. */
async function raw(subject: string, bytes: Uint8Array) {
  const m = await n.nc.request(subject, bytes, { timeout: 10_000 });
  return decode(m.data) as { ok: boolean; error?: { code: string; message: string } };
}
const task = (verb: string) => `corral.v1.node.${n.node}.task.${verb}`;

describe('bad input on the Task API', () => {
  it.each([
    ['bytes that are not MessagePack', new Uint8Array([0xc1, 0xff, 0x00]), 'InvalidArgument', /not MessagePack/],
    ['JSON text', new TextEncoder().encode('{"id":"x"}'), 'InvalidArgument', /MessagePack/],
    ['a list, not a map', encode(['x']), 'InvalidArgument', /must be a map/],
    ['an id of the wrong type', encode({ id: 42, bundle: '/x' }), 'InvalidArgument', /id must be a string/],
    [
      'rootfs of the wrong shape',
      encode({ id: 'aa', bundle: '/x', rootfs: 'tmpfs' }),
      'InvalidArgument',
      /rootfs must be a list/,
    ],
    [
      'terminal not a boolean',
      encode({ id: 'aa', bundle: '/x', terminal: 'yes' }),
      'InvalidArgument',
      /terminal must be a boolean/,
    ],
    ['a huge payload', encode({ id: 'aa', bundle: 'x'.repeat(600 * 1024) }), 'ResourceExhausted', /exceeds/],
    ['an id with a slash', encode({ id: 'a/b', bundle: '/x' }), 'InvalidArgument', /invalid container\/sandbox ID/],
    ['an id with ..', encode({ id: '..', bundle: '/x' }), 'InvalidArgument', /invalid container\/sandbox ID/],
    ['a blank id', encode({ id: '', bundle: '/x' }), 'InvalidArgument', /id is required|ID cannot be blank/],
    ['a missing bundle', encode({ id: 'nobundle' }), 'InvalidArgument', /Missing bundle path/],
    ['an empty payload', new Uint8Array(0), 'InvalidArgument', /payload is empty/],
  ])('create with %s', async (_what, bytes, code, message) => {
    const r = await raw(task('create'), bytes);
    expect(r.ok).toBe(false);
    expect(r.error!.code).toBe(code);
    expect(r.error!.message).toMatch(message);
  });

  it('a bundle outside the allowed roots → InvalidArgument naming the roots', async () => {
    await expect(n.call('create', { id: 'outside', bundle: '/etc' })).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: expect.stringMatching(/outside the allowed bundle roots/),
    });
  });
  it('a bundle that escapes its root with .. → InvalidArgument', async () => {
    await expect(n.call('create', { id: 'escape', bundle: `${n.bundles}/../../../etc` })).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
  });
  it('a bundle without config.json → NotFound', async () => {
    const b = n.bundle('noconfig', { args: ['true'] });
    await import('node:fs').then((fs) => fs.rmSync(`${b}/config.json`));
    await expect(n.call('create', { id: 'noconfig', bundle: b })).rejects.toMatchObject({ code: 'NotFound' });
  });
  it("config.json without process → InvalidArgument, Kata's text", async () => {
    const b = n.bundle('noproc', { args: ['true'] });
    await import('node:fs').then((fs) =>
      fs.writeFileSync(
        `${b}/config.json`,
        JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, linux: { resources: {} } }),
      ),
    );
    await expect(n.call('create', { id: 'noproc', bundle: b })).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: 'ContainerCapabilities, Process is nil',
    });
  });
  it('an unknown verb → InvalidArgument listing the verbs', async () => {
    const r = await raw(task('explode'), encode({ id: 'x' }));
    expect(r.error).toMatchObject({ code: 'InvalidArgument' });
    expect(r.error!.message).toMatch(/unknown verb "explode"; verbs: create, createInline, start/);
  });
  it.each(['start', 'state', 'kill', 'wait', 'delete', 'pids'])('%s of an unknown task → NotFound', async (verb) => {
    await expect(n.call(verb as never, { id: 'ghost' })).rejects.toMatchObject({
      code: 'NotFound',
      message: 'container does not exist ghost',
    });
  });
  it('kill with an unknown signal → InvalidArgument', async () => {
    await expect(n.call('kill', { id: 'ghost', signal: 'SIGNOPE' })).rejects.toMatchObject({ code: 'InvalidArgument' });
  });
  it('workload verbs: a task that does not exist → NotFound; a malformed request → InvalidArgument', async () => {
    for (const v of ['pause', 'resume', 'stats', 'closeIO'] as const)
      await expect(n.call(v, { id: 'ghost' })).rejects.toMatchObject({ code: 'NotFound' });
    const exec = { id: 'ghost', execId: 'e', spec: { args: ['true'] } };
    await expect(n.call('exec', exec)).rejects.toMatchObject({ code: 'NotFound' });
    await expect(n.call('exec', { ...exec, execId: 'bad id!' })).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(n.call('exec', { id: 'ghost', execId: 'e' })).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: expect.stringMatching(/spec/),
    });
    await expect(n.call('resize', { id: 'ghost', width: -1, height: 5 })).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
    await expect(n.call('update', { id: 'ghost', resources: { memory: { limit: 'lots' } } })).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
  });
});

/** A deadline an hour ahead (the table is built at load time): a loaded machine still reaches validation first. */
const SOON = Date.now() + 3_600_000;

describe('bad input on the worker subjects', () => {
  it.each([
    [
      'mount',
      'mountRootfs',
      encode({ opId: 'b1', deadlineMs: SOON, target: 'relative/path', mounts: [] }),
      'InvalidArgument',
    ],
    ['mount', 'removeTree', encode({ opId: 'b2', deadlineMs: SOON, path: '/etc' }), 'InvalidArgument'],
    [
      'mount',
      'bind',
      encode({ opId: 'b3', deadlineMs: SOON, source: '/', target: '/tmp/../etc/x' }),
      'InvalidArgument',
    ],
    ['mount', 'unmountAll', new Uint8Array([0xc1]), 'InvalidArgument'],
    ['mount', 'nosuchop', encode({ opId: 'b4' }), 'InvalidArgument'],
    ['hypervisor', 'boot', encode({ opId: 'b5', deadlineMs: SOON, sandboxId: '../x' }), 'InvalidArgument'],
    ['hypervisor', 'removeUser', encode({ opId: 'b6', deadlineMs: SOON, user: 'root', uid: 0 }), 'InvalidArgument'],
    [
      'hypervisor',
      'startProcess',
      encode({ opId: 'b7', sandboxId: 'x', containerId: 'y', args: 'sh' }),
      'InvalidArgument',
    ],
  ] as const)('%s.%s → %s', async (kind, op, bytes, code) => {
    const r = await raw(subjects.worker(n.node, kind, op), bytes);
    expect(r.ok).toBe(false);
    expect(r.error!.code).toBe(code);
  });
});

describe('after all that', () => {
  it('the agent still creates and runs a sandbox, and nothing leaked', async () => {
    const b = n.bundle('still', { args: ['sh', '-c', 'exit 7'] });
    const r = await n.cli(['run', '--id', 'still', '--bundle', b, '--rm']);
    expect(r.code).toBe(7);
    expect(n.leftovers(['still'])).toEqual(NOTHING_LEFT);
  });
  it('the CLI prints one clear line for bad input, never a stack trace', async () => {
    const r = await n.cli(['create', 'bad/id', '--bundle', '/etc']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^corral: InvalidArgument: /);
    const r2 = await n.cli(['run', '--rootfs', 'nocolon']);
    expect(r2.stderr).toMatch(/^corral: InvalidArgument: --bundle DIR is required|--rootfs/);
    const r3 = await n.cli(['frobnicate']);
    expect(r3.code).toBe(2);
  });
});
