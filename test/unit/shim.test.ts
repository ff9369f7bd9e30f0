/**
 * The shim's pure parts: containerd's command line, socket names and pod grouping, stdio strings,
 * runtime options, the conversions to containerd's messages (metrics, events with bare type URLs).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeEvent } from '../../src/shim/events.ts';
import { parseFlags } from '../../src/shim/flags.ts';
import { MetricsSchema } from '../../src/shim/gen/cgroups_v2_pb.ts';
import { OptionsSchema } from '../../src/shim/gen/runtime_options_pb.ts';
import { TaskExitSchema } from '../../src/shim/gen/task_events_pb.ts';
import { groupOf, socketPath } from '../../src/shim/socket.ts';
import { stdioPath } from '../../src/shim/stdio.ts';
import { configPathOf, metricsOf, resourcesOf } from '../../src/shim/task-service.ts';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync('/tmp/crl-shim-unit-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('containerd’s command line', () => {
  it('parses start and delete as containerd 1.6 writes them', () => {
    const argv = [
      '-namespace',
      'default',
      '-address',
      '/run/containerd/containerd.sock',
      '-publish-binary',
      '/usr/bin/containerd',
      '-id',
      'c1',
      'start',
    ];
    expect(parseFlags(argv)).toMatchObject({ namespace: 'default', id: 'c1', action: 'start', debug: false });
    expect(parseFlags(['-namespace=k8s.io', '-id', 'x', '-debug', '-bundle', '/b', 'delete'])).toMatchObject({
      namespace: 'k8s.io',
      bundle: '/b',
      debug: true,
      action: 'delete',
    });
    expect(parseFlags(['-namespace', 'n', '-id', 'x', '-socket', '/s']).action).toBe('serve');
  });
  it('refuses what it cannot mean, naming it', () => {
    expect(() => parseFlags(['-id', 'x', '-namespace', 'n', 'stop'])).toThrow(/unknown action "stop"/);
    expect(() => parseFlags(['-frob', '1'])).toThrow(/unknown flag -frob/);
    expect(() => parseFlags(['-id'])).toThrow(/flag -id needs a value/);
    expect(() => parseFlags(['start'])).toThrow(/start needs -id and -namespace/);
  });
});

describe('sockets and pods', () => {
  it('names the socket by sha256(address/ns/group) under the ttrpc socket’s dir, short enough for sun_path', () => {
    const id = 'a'.repeat(64);
    const p = socketPath('/run/containerd/containerd.sock', 'k8s.io', id, '/run/containerd/containerd.sock.ttrpc');
    expect(p).toMatch(/^\/run\/containerd\/s\/[0-9a-f]{64}$/);
    expect(p.length).toBeLessThan(107);
    expect(socketPath('/a', 'n', 'g')).not.toBe(socketPath('/a', 'n', 'h'));
  });
  it('groups a pod container with its sandbox; anything else is its own group', () => {
    const write = (name: string, annotations?: Record<string, string>) => {
      const b = join(dir, name);
      rmSync(b, { recursive: true, force: true });
      mkdirSync(b);
      writeFileSync(join(b, 'config.json'), JSON.stringify({ annotations }));
      return b;
    };
    const sandbox = { 'io.kubernetes.cri.container-type': 'sandbox', 'io.kubernetes.cri.sandbox-id': 'pod1' };
    const container = { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'pod1' };
    expect(groupOf(write('s', sandbox), 'pod1')).toBe('pod1');
    expect(groupOf(write('c', container), 'c1')).toBe('pod1');
    expect(groupOf(write('plain'), 'c2')).toBe('c2');
    expect(groupOf(join(dir, 'missing'), 'c3')).toBe('c3');
  });
});

describe('stdio strings', () => {
  it('takes FIFO paths and file:// URIs, nothing for an empty string, refuses the rest', () => {
    expect(stdioPath('', 'stdout')).toBeUndefined();
    expect(stdioPath('/run/containerd/fifo/1/c1-stdout', 'stdout')).toBe('/run/containerd/fifo/1/c1-stdout');
    expect(stdioPath('file:///var/log/c1.log', 'stdout')).toBe('/var/log/c1.log');
    expect(() => stdioPath('binary:///usr/bin/logger?x=1', 'stdout')).toThrow(/only FIFOs and file:\/\//);
    expect(() => stdioPath('relative', 'stdin')).toThrow(/not an absolute path/);
  });
});

describe('conversions', () => {
  it('reads ConfigPath from runtimeoptions.v1.Options and nothing from other option types', () => {
    const value = toBinary(OptionsSchema, create(OptionsSchema, { configPath: '/etc/corral/x.toml' }));
    expect(configPathOf({ $typeName: 'google.protobuf.Any', typeUrl: 'runtimeoptions.v1.Options', value })).toBe(
      '/etc/corral/x.toml',
    );
    expect(
      configPathOf({ $typeName: 'google.protobuf.Any', typeUrl: 'containerd.runc.v1.Options', value }),
    ).toBeUndefined();
    expect(configPathOf(undefined)).toBeUndefined();
  });
  it('packs cgroup v2 stats as io.containerd.cgroups.v2.Metrics (no limit = max u64)', () => {
    const a = metricsOf({
      cpu: { usageUsec: 1500, userUsec: 1000, systemUsec: 500, nrPeriods: 0, nrThrottled: 0 },
      memory: { usage: 4096, limit: null, anon: 1024, file: 2048, oomKills: 1 },
      pids: { current: 2, limit: 10 },
    });
    expect(a.typeUrl).toBe('io.containerd.cgroups.v2.Metrics');
    const m = fromBinary(MetricsSchema, a.value);
    expect(m.cpu?.usageUsec).toBe(1500n);
    expect(m.memory?.usageLimit).toBe(18446744073709551615n);
    expect(m.memoryEvents?.oomKill).toBe(1n);
    expect(m.pids).toMatchObject({ current: 2n, limit: 10n });
  });
  it('packs events with the bare type URL containerd 1.6 resolves', () => {
    const a = encodeEvent({
      topic: '/tasks/exit',
      containerId: 'c1',
      id: 'e1',
      pid: 7,
      exitStatus: 3,
      exitedAt: 1_700_000_000_123,
    });
    expect(a.typeUrl).toBe('containerd.events.TaskExit');
    const e = fromBinary(TaskExitSchema, a.value);
    expect(e).toMatchObject({ containerId: 'c1', id: 'e1', pid: 7, exitStatus: 3 });
    expect(e.exitedAt).toMatchObject({ seconds: 1_700_000_000n, nanos: 123_000_000 });
  });
  it('turns Update’s LinuxResources into the agent’s update body, leaving out what is not set', () => {
    const r = {
      memory: { limit: 268435456, swap: 1 },
      cpu: { quota: 50000, period: 100000, shares: 2 },
      pids: { limit: 64 },
    };
    expect(resourcesOf(r)).toEqual({
      memory: { limit: 268435456 },
      cpu: { quota: 50000, period: 100000 },
      pids: { limit: 64 },
    });
    expect(resourcesOf({ cpu: { period: 100000 } })).toEqual({ cpu: { quota: undefined, period: 100000 } });
    expect(resourcesOf({})).toEqual({});
  });
});
