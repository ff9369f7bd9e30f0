// Golden bytes for the generated shim protos, written by hand from the field numbers (tag = field << 3 | wire
// type; 0 varint, 2 length-delimited), so that a field renumbered in src/shim/proto/*.proto fails here.
import { create, fromBinary, type DescMessage, type MessageInitShape, toBinary } from '@bufbuild/protobuf';
import { anyPack, AnySchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { MetricsSchema as CgroupsV1MetricsSchema } from '../../src/shim/gen/cgroups_v1_pb.ts';
import { MetricsSchema } from '../../src/shim/gen/cgroups_v2_pb.ts';
import { EnvelopeSchema, Events, ForwardRequestSchema } from '../../src/shim/gen/events_service_pb.ts';
import { CreateTaskRequestSchema, StateResponseSchema, Task } from '../../src/shim/gen/shim_pb.ts';
import { TaskExitSchema } from '../../src/shim/gen/task_events_pb.ts';
import { Status } from '../../src/shim/gen/task_types_pb.ts';
import { RequestSchema, ResponseSchema } from '../../src/shim/gen/ttrpc_pb.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ascii = (s: string) => Buffer.from(s).toString('hex');
const enc = <D extends DescMessage>(d: D, init: MessageInitShape<D>) => hex(toBinary(d, create(d, init)));

describe('shim protos: golden bytes', () => {
  it('CreateTaskRequest with id, bundle, rootfs and terminal', () => {
    const rootfs = [{ type: 'bind', source: '/s', options: ['rbind'] }];
    const mount = '0a04' + ascii('bind') + '1202' + ascii('/s') + '2205' + ascii('rbind'); // Mount 1, 2, 4: 17 bytes
    const want = '0a02' + ascii('c1') + '1202' + ascii('/b') + '1a11' + mount + '2001'; // 1 id, 2 bundle, 3, 4 terminal
    expect(enc(CreateTaskRequestSchema, { id: 'c1', bundle: '/b', rootfs, terminal: true })).toBe(want);
    expect(fromBinary(CreateTaskRequestSchema, Buffer.from(want, 'hex')).rootfs[0]?.options).toEqual(['rbind']);
  });

  it('StateResponse with status RUNNING and exited_at', () => {
    const exitedAt = { seconds: 1_700_000_000n, nanos: 5 };
    const ts = '08' + '80e2cfaa06' + '1005'; // Timestamp 1 seconds (varint), 2 nanos
    const want = '0a02' + ascii('c1') + '182a' + '2002' + '5208' + ts; // 1 id, 3 pid 42, 4 status 2, 10 exited_at
    expect(enc(StateResponseSchema, { id: 'c1', pid: 42, status: Status.RUNNING, exitedAt })).toBe(want);
    expect(Status.RUNNING).toBe(2);
  });

  it('TaskExit in an Any whose type_url is the bare full name (not anyPack, which prefixes it)', () => {
    const exit = create(TaskExitSchema, { containerId: 'c1', id: 'c1', pid: 42, exitStatus: 137 });
    const any = create(AnySchema, { typeUrl: TaskExitSchema.typeName, value: toBinary(TaskExitSchema, exit) });
    const value = '0a02' + ascii('c1') + '1202' + ascii('c1') + '182a' + '208901'; // 1, 2, 3 pid, 4 exit_status
    expect(hex(toBinary(AnySchema, any))).toBe('0a1a' + ascii('containerd.events.TaskExit') + '120d' + value);
    expect(anyPack(TaskExitSchema, exit).typeUrl).toBe('type.googleapis.com/containerd.events.TaskExit');
  });

  it('ttrpc Request and Response envelopes', () => {
    const req = {
      service: 'containerd.task.v2.Task',
      method: 'State',
      payload: Buffer.from('0a026331', 'hex'),
      timeoutNano: 2_000_000_000n,
      metadata: [{ key: 'k', value: 'v' }],
    };
    const kv = '0a01' + ascii('k') + '1201' + ascii('v');
    const svc = '0a17' + ascii('containerd.task.v2.Task') + '1205' + ascii('State');
    expect(enc(RequestSchema, req)).toBe(svc + '1a04' + '0a026331' + '20' + '80a8d6b907' + '2a06' + kv);
    const notFound = { status: { code: 5, message: 'nf' } };
    expect(enc(ResponseSchema, notFound)).toBe('0a06' + '0805' + '1202' + ascii('nf'));
    expect(enc(ResponseSchema, { status: {}, payload: new Uint8Array([1]) })).toBe('0a00' + '120101');
  });

  it('events ForwardRequest wraps an Envelope (1 timestamp, 2 namespace, 3 topic, 4 event)', () => {
    const event = { typeUrl: 'x', value: new Uint8Array() };
    const envelope = create(EnvelopeSchema, { timestamp: { seconds: 1n }, namespace: 'n', topic: '/t', event });
    const env = '0a020801' + '1201' + ascii('n') + '1a02' + ascii('/t') + '2203' + '0a01' + ascii('x');
    expect(enc(ForwardRequestSchema, { envelope })).toBe('0a' + '10' + env);
  });

  it('cgroups v2 Metrics: 1 pids, 2 cpu, 4 memory (usage is field 32)', () => {
    const m = { pids: { current: 3n }, cpu: { usageUsec: 7n }, memory: { usage: 1024n } };
    expect(enc(MetricsSchema, m)).toBe('0a020803' + '12020807' + '2204' + '8002' + '8008');
    expect(MetricsSchema.typeName).toBe('io.containerd.cgroups.v2.Metrics');
    expect(CgroupsV1MetricsSchema.typeName).toBe('io.containerd.cgroups.v1.Metrics');
    expect(enc(CgroupsV1MetricsSchema, { pids: { current: 3n } })).toBe('12020803'); // v1: pids is field 2
  });
});

describe('shim protos: services', () => {
  it('Task has the 17 methods of containerd.task.v2.Task, by proto name', () => {
    expect(Task.typeName).toBe('containerd.task.v2.Task');
    const names = 'State Create Start Delete Pids Pause Resume Checkpoint Kill Exec ResizePty CloseIO Update Wait';
    expect(Task.methods.map((m) => m.name)).toEqual([...names.split(' '), 'Stats', 'Connect', 'Shutdown']);
    expect(Task.method.closeIO.name).toBe('CloseIO');
  });
  it('Events has Forward', () => {
    expect(Events.typeName).toBe('containerd.services.events.ttrpc.v1.Events');
    expect(Events.method.forward.name).toBe('Forward');
  });
});
