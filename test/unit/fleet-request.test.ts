import { describe, expect, it } from 'vitest';
import { DEFAULT_VM, parseFleetCreate, sizeFleetCreate } from '../../src/fleet/request.ts';
import { expectError } from './kata/expect-error.ts';

/** A minimal valid config.json as a map. */
export const spec = (o: { annotations?: Record<string, string>; resources?: Record<string, unknown> } = {}) => ({
  ociVersion: '1.0.2',
  process: { args: ['/bin/true'], cwd: '/', user: { uid: 0, gid: 0 } },
  root: { path: 'rootfs' },
  linux: { resources: o.resources ?? {} },
  ...(o.annotations ? { annotations: o.annotations } : {}),
});
const body = (o: Record<string, unknown> = {}) => ({ id: 'job-1', spec: spec(), ...o });
const H = 'io.katacontainers.config.hypervisor.';

describe('fleet create: sizing', () => {
  it.each<[string, Record<string, unknown>, { type: string; demand: { vcpus: number; memoryMiB: number } }]>([
    [
      'no resources: Kata defaults (1 vCPU, 2048 MiB)',
      body(),
      { type: 'single_container', demand: { vcpus: 1, memoryMiB: 2048 } },
    ],
    [
      'single container: linux.resources are added (quota/period ceil, memory in MiB)',
      body({ spec: spec({ resources: { cpu: { quota: 150000, period: 100000 }, memory: { limit: 512 * 1048576 } } }) }),
      { type: 'single_container', demand: { vcpus: 3, memoryMiB: 2560 } },
    ],
    [
      'single container: quota without period counts nothing (Kata)',
      body({ spec: spec({ resources: { cpu: { quota: 150000 } } }) }),
      { type: 'single_container', demand: { vcpus: 1, memoryMiB: 2048 } },
    ],
    [
      'pod sandbox: the CRI sandbox annotations are added',
      body({
        spec: spec({
          annotations: {
            'io.kubernetes.cri.container-type': 'sandbox',
            'io.kubernetes.cri.sandbox-cpu-quota': '200000',
            'io.kubernetes.cri.sandbox-cpu-period': '100000',
            'io.kubernetes.cri.sandbox-memory': String(1024 * 1048576),
          },
        }),
      }),
      { type: 'pod_sandbox', demand: { vcpus: 3, memoryMiB: 3072 } },
    ],
    [
      'annotations override the base size',
      body({ spec: spec({ annotations: { [`${H}default_vcpus`]: '2', [`${H}default_memory`]: '512' } }) }),
      { type: 'single_container', demand: { vcpus: 2, memoryMiB: 512 } },
    ],
    [
      'the request vm overrides annotations',
      body({ vm: { vcpus: 4, memoryMiB: 1024 }, spec: spec({ annotations: { [`${H}default_vcpus`]: '2' } }) }),
      { type: 'single_container', demand: { vcpus: 4, memoryMiB: 1024 } },
    ],
    [
      'a pod container needs nothing new: it joins its sandbox',
      body({
        spec: spec({
          annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'pod-1' },
        }),
      }),
      { type: 'pod_container', demand: { vcpus: 0, memoryMiB: 0 } },
    ],
  ])('%s', (_n, b, want) => {
    const s = sizeFleetCreate(parseFleetCreate(b));
    expect({ type: s.containerType, demand: s.demand }).toEqual(want);
  });

  it('a pod container names its sandbox', () => {
    expect(
      sizeFleetCreate(
        parseFleetCreate(
          body({
            spec: spec({
              annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'pod-1' },
            }),
          }),
        ),
      ).sandboxId,
    ).toBe('pod-1');
  });

  it('keeps the fields that travel to the node', () => {
    const r = parseFleetCreate(
      body({
        rootfs: [{ type: 'bind', source: '/srv/images/a', options: ['rbind'] }],
        labels: { zone: 'a' },
        policy: 'binpack',
        terminal: true,
        options: { configPath: '/etc/corral/x.toml' },
      }),
    );
    expect(r).toMatchObject({
      id: 'job-1',
      rootfs: [{ type: 'bind', source: '/srv/images/a', options: ['rbind'] }],
      labels: { zone: 'a' },
      policy: 'binpack',
      terminal: true,
      options: { configPath: '/etc/corral/x.toml' },
    });
    expect(DEFAULT_VM).toEqual({ vcpus: 1, memoryMiB: 2048 });
  });

  it.each<[string, unknown, string, RegExp]>([
    ['not a map', 'x', 'InvalidArgument', /request must be a map/],
    ['no id', { spec: spec() }, 'InvalidArgument', /id is required/],
    ['a bad id (Kata rule)', body({ id: '-x' }), 'InvalidArgument', /invalid container\/sandbox ID/],
    ['no spec', { id: 'job-1' }, 'InvalidArgument', /spec \(the OCI config.json as a map\) is required/],
    ['a bundle path', body({ bundle: '/run/x' }), 'InvalidArgument', /bundle must not be set in a fleet create/],
    ['labels not strings', body({ labels: { a: 1 } }), 'InvalidArgument', /labels.a must be a string/],
    ['an unknown policy', body({ policy: 'random' }), 'InvalidArgument', /policy must be one of spread, binpack/],
    [
      "vm memory below Kata's minimum",
      body({ vm: { memoryMiB: 128 } }),
      'InvalidArgument',
      /vm.memoryMiB 128 is less than the minimum 256/,
    ],
    ['bad rootfs', body({ rootfs: [{ type: 'bind' }] }), 'InvalidArgument', /source is required/],
  ])('refused: %s', async (_n, b, code, msg) => {
    await expectError(() => parseFleetCreate(b), code as never, msg);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a spec without linux (parseSpec)', { ...spec(), linux: undefined }, /missing Linux section|linux/i],
    ['a spec without process', { ...spec(), process: undefined }, /Process is nil|process/],
    [
      'a bad default_memory annotation (Kata text)',
      spec({ annotations: { [`${H}default_memory`]: '100' } }),
      /less than minimum required 256/,
    ],
    [
      'an unknown container type (Kata text)',
      spec({ annotations: { 'io.kubernetes.cri.container-type': 'x' } }),
      /Unknown container type x/,
    ],
  ])('spec refused: %s', async (_n, s, msg) => {
    await expectError(() => sizeFleetCreate(parseFleetCreate(body({ spec: s }))), 'InvalidArgument', msg);
  });
});
