import { describe, expect, it } from 'vitest';
import { NODE_NAME_MAX, isNodeName, nodeName } from '../../src/bus/node-name.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { nodePermissions } from '../../src/bus/permissions.ts';
import { nodeKey } from '../../src/fleet/registry.ts';
import { loadSettings } from '../../src/agent/settings.ts';

const max = 'n'.repeat(NODE_NAME_MAX);

describe('nodeName: one rule for every place a node name goes', () => {
  it.each(['n1', 'local', 'node-01', 'a_b', 'A', 'sim-0042', max])('accepts %j', (v) => {
    expect(nodeName(v)).toBe(v);
    expect(isNodeName(v)).toBe(true);
  });

  it.each([
    ['', 'empty'],
    ['n'.repeat(NODE_NAME_MAX + 1), 'too long'],
    ['a.b', 'a dot adds a subject level'],
    ['a~b', 'NATS KV keys refuse ~'],
    ['*', 'wildcard'],
    ['>', 'wildcard'],
    ['a b', 'whitespace'],
    ['a/b', 'path separator'],
    ['nöde', 'not ASCII'],
    [undefined, 'absent'],
    [42, 'not a string'],
  ] as [unknown, string][])('refuses %j (%s) with InvalidArgument naming the value', (v) => {
    expect(isNodeName(v)).toBe(false);
    expect(() => nodeName(v, 'node name (--node / CORRAL_NODE)')).toThrowError(
      expect.objectContaining({
        code: 'InvalidArgument',
        message: expect.stringMatching(/^node name \(--node \/ CORRAL_NODE\) must be 1-64 letters, digits, '_' or '-'/),
      }),
    );
  });

  it('settings, subjects, the registry and the NKEY permissions all apply it', () => {
    for (const bad of ['a.b', 'n'.repeat(65), 'a~b']) {
      expect(() => loadSettings({ node: bad }, {})).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
      expect(() => subjects.task(bad, 'create')).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
      expect(() => subjects.evt(bad, '*', '>')).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
      expect(() => nodeKey(bad)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
      expect(() => nodePermissions(bad)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
    }
    expect(loadSettings({ node: max }, {}).node).toBe(max);
    expect(subjects.task(max, 'create')).toBe(`corral.v1.node.${max}.task.create`);
    expect(nodeKey(max)).toBe(max);
    expect(nodePermissions(max).subscribe.allow).toContain(`corral.v1.node.${max}.>`);
  });
});
