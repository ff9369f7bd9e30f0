import { describe, expect, it } from 'vitest';
import {
  containerType,
  isCriSandbox,
  isCrioContainerManager,
  isSandbox,
  sandboxIdOf,
} from '../../../src/kata/container-type.ts';
import { expectError } from './expect-error.ts';

const CRI = 'io.kubernetes.cri.container-type';
const CRIO = 'io.kubernetes.cri-o.ContainerType';
const DOCKER = 'io.kubernetes.docker.type';

describe('containerType (§2.1–2.3)', () => {
  it.each([
    [{}, 'single_container'],
    [undefined, 'single_container'],
    [{ other: 'sandbox' }, 'single_container'],
    [{ [CRI]: 'sandbox' }, 'pod_sandbox'],
    [{ [CRI]: 'container' }, 'pod_container'],
    [{ [CRI]: 'podsandbox' }, 'pod_sandbox'],
    [{ [CRIO]: 'sandbox' }, 'pod_sandbox'],
    [{ [CRIO]: 'container' }, 'pod_container'],
    [{ [CRIO]: 'podsandbox' }, 'pod_sandbox'],
    [{ [DOCKER]: 'podsandbox' }, 'pod_sandbox'],
    [{ [DOCKER]: 'sandbox' }, 'pod_sandbox'],
    [{ [DOCKER]: 'container' }, 'pod_container'],
    [{ [CRI]: 'container', [CRIO]: 'sandbox' }, 'pod_container'],
    [{ [CRIO]: 'sandbox', [DOCKER]: 'container' }, 'pod_sandbox'],
  ] as const)('%j → %s', (a, t) => {
    expect(containerType(a)).toBe(t);
  });

  it.each([
    [{ [CRI]: 'errorType' }, 'Unknown container type errorType'],
    [{ [CRI]: '' }, 'Unknown container type '],
    [{ [CRI]: 'Sandbox' }, 'Unknown container type Sandbox'],
    [{ [DOCKER]: 'x' }, 'Unknown container type x'],
  ])('%j → %s', async (a, msg) => {
    await expectError(() => containerType(a), 'InvalidArgument', msg);
  });

  it('the first present key decides even when a later key holds a valid value', async () => {
    await expectError(
      () => containerType({ [CRI]: 'bogus', [CRIO]: 'sandbox' }),
      'InvalidArgument',
      'Unknown container type bogus',
    );
  });

  it('prototype keys are not annotations', () => {
    expect(containerType(JSON.parse('{"__proto__": {"io.kubernetes.cri.container-type": "x"}}'))).toBe(
      'single_container',
    );
  });

  it('IsSandbox / IsCriSandbox', () => {
    expect([isSandbox('pod_sandbox'), isSandbox('single_container'), isSandbox('pod_container')]).toEqual([
      true,
      true,
      false,
    ]);
    expect([isCriSandbox('pod_sandbox'), isCriSandbox('single_container'), isCriSandbox('pod_container')]).toEqual([
      true,
      false,
      false,
    ]);
  });

  it('CRI-O detection (§2.6)', () => {
    expect(isCrioContainerManager({ [CRIO]: 'sandbox' })).toBe(true);
    expect(isCrioContainerManager({ [CRIO]: 'container' })).toBe(true);
    expect(isCrioContainerManager({ [CRIO]: 'podsandbox' })).toBe(false);
    expect(isCrioContainerManager({ [CRI]: 'sandbox' })).toBe(false);
  });
});

describe('sandboxIdOf (§2.4)', () => {
  it.each([
    [{ 'io.kubernetes.cri.sandbox-id': 'a' }, 'a'],
    [{ 'io.kubernetes.cri-o.SandboxID': 'b' }, 'b'],
    [{ 'io.kubernetes.sandbox.id': 'c' }, 'c'],
    [
      { 'io.kubernetes.cri.sandbox-id': 'a', 'io.kubernetes.cri-o.SandboxID': 'b', 'io.kubernetes.sandbox.id': 'c' },
      'a',
    ],
    [{ 'io.kubernetes.cri-o.SandboxID': 'b', 'io.kubernetes.sandbox.id': 'c' }, 'b'],
    [{ 'io.kubernetes.cri.sandbox-id': '', 'io.kubernetes.cri-o.SandboxID': 'b' }, ''],
  ])('%j → %j (first present key wins, even if empty)', (a, id) => {
    expect(sandboxIdOf(a)).toBe(id);
  });
  it.each<Record<string, string> | undefined>([{}, undefined, { 'io.kubernetes.cri.container-type': 'container' }])(
    '%j → "Could not find sandbox ID"',
    async (a) => {
      await expectError(() => sandboxIdOf(a), 'InvalidArgument', 'Could not find sandbox ID');
    },
  );
});
