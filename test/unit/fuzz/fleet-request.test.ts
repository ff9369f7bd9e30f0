/**
 * The fleet create request (src/fleet/request.ts, `corral.v1.fleet.task.create`) on any decoded body and
 * on valid requests with one field broken: `parseFleetCreate` then `sizeFleetCreate` answer a sized
 * request or InvalidArgument (naming the field; annotation errors keep Kata's texts), never another
 * error. A sized request adds up: demand = base + workload, the base at least 1 vCPU and 256 MiB, and a
 * pod container reserves nothing.
 */
import { describe, expect, vi } from 'vitest';
import { parseFleetCreate, sizeFleetCreate } from '../../../src/fleet/request.ts';
import { ociSpec } from './oci-specs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { createBody } from './task-bodies.ts';
import { verdict } from './verdict.ts';
import { broken, throughCodec, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const fleetBody = fc
  .tuple(
    createBody,
    ociSpec,
    fc.record(
      {
        labels: fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.stringMatching(/^[a-z0-9]{0,6}$/), { maxKeys: 3 }),
        policy: fc.constantFrom('spread', 'binpack'),
        vm: fc.record(
          { vcpus: fc.integer({ min: 1, max: 64 }), memoryMiB: fc.integer({ min: 256, max: 65536 }) },
          { requiredKeys: [] },
        ),
      },
      { requiredKeys: [] },
    ),
  )
  .map(([{ bundle: _b, ...b }, spec, extra]) => throughCodec({ ...b, spec, ...extra }));

const size = (body: unknown) => sizeFleetCreate(parseFleetCreate(body));

function addsUp(s: ReturnType<typeof sizeFleetCreate>) {
  if (s.containerType === 'pod_container') {
    expect(s.demand).toEqual({ vcpus: 0, memoryMiB: 0 });
    return;
  }
  expect(s.base.vcpus).toBeGreaterThanOrEqual(1);
  expect(s.base.memoryMiB).toBeGreaterThanOrEqual(256);
  expect(s.demand).toEqual({
    vcpus: s.base.vcpus + s.workload.vcpus,
    memoryMiB: s.base.memoryMiB + s.workload.memMiB,
  });
  expect(s.sandboxId).toBe(s.request.id);
}

describe('fleet create request', () => {
  test.prop([wireValue()], { numRuns: RUNS })('any decoded body: a sized request or InvalidArgument', (body) => {
    const r = verdict(() => size(body));
    if (r.ok) addsUp(r.value);
  });

  test.prop([broken(fleetBody)], { numRuns: RUNS })(
    'a valid request with one field broken: a sized request, or InvalidArgument naming that field',
    ({ value, path, names }) => {
      const kata = path[0] === 'spec' && path[1] === 'annotations';
      // The spec is config.json: errors about the whole document say "config.json".
      const whole = path.length === 1 && path[0] === 'spec' ? ['config.json'] : [];
      const r = verdict(() => size(value), { names: kata ? [] : [...names, ...whole] });
      if (r.ok) addsUp(r.value);
    },
  );

  test.prop([fleetBody], { numRuns: RUNS })('a valid request is sized, its spec carried unchanged', (body) => {
    const s = size(body);
    expect(s.request.spec).toEqual((body as { spec: unknown }).spec);
    addsUp(s);
  });
});

describe('regressions', () => {
  const spec = { process: { args: ['/bin/true'] }, root: { path: 'rootfs' }, linux: { resources: {} } };
  test('regression: a policy sent as a MessagePack uint64 is InvalidArgument, not a TypeError', () => {
    const body = throughCodec({ id: 'job-1', spec, policy: 2n ** 64n - 1n });
    expect(() => parseFleetCreate(body)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
  test('regression: a spec holding a MessagePack int64 beyond 2^53 is InvalidArgument, not a TypeError', () => {
    const big = { ...spec, linux: { resources: { memory: { limit: 2n ** 63n - 1n } } } };
    const body = throughCodec({ id: 'job-1', spec: big });
    expect(() => size(body)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});
