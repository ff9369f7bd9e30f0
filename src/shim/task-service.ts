/**
 * containerd's `containerd.task.v2.Task` on top of the agent's Task API: decoded requests in, response
 * inits out (ttrpc/server.ts encodes them). Conversions only: pids, statuses, timestamps, the JSON Anys
 * (an exec's OCI process, Update's LinuxResources), runtime options' ConfigPath, stats as cgroup v2 Metrics.
 * Errors keep their catalogue codes, which the ttrpc layer maps to gRPC codes (NotFound → NOT_FOUND, ...).
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { timestampFromMs, type Any } from '@bufbuild/protobuf/wkt';
import { err } from '../errors.ts';
import type { ContainerStats } from '../domain/ops.ts';
import type { AgentClient } from './agent.ts';
import { MetricsSchema } from './gen/cgroups_v2_pb.ts';
import { OptionsSchema } from './gen/runtime_options_pb.ts';
import { Status } from './gen/task_types_pb.ts';
import type { ShimTasks } from './tasks.ts';

const STATUS: Record<string, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  stopped: Status.STOPPED,
  paused: Status.PAUSED,
  pausing: Status.PAUSING,
};
export const SHIM_VERSION = 'corral-shim 0.1.0';

/** An Any whose value is JSON (containerd's runtime-spec types travel that way, not as protobuf). */
function jsonAny(a: Any | undefined, what: string): unknown {
  if (!a?.value.length) throw err.invalid(`${what} is missing`);
  try {
    return JSON.parse(new TextDecoder().decode(a.value));
  } catch (e) {
    throw err.invalid(`${what} (${a.typeUrl}) is not JSON`, e);
  }
}

/** ConfigPath from runtime options of the runtimeoptions.v1.Options type; other option types carry none. */
export function configPathOf(a: Any | undefined): string | undefined {
  if (!a?.value.length || !a.typeUrl.endsWith('runtimeoptions.v1.Options')) return undefined;
  return fromBinary(OptionsSchema, a.value).configPath || undefined;
}

const big = (n: number | null | undefined) => BigInt(Math.max(0, Math.round(n ?? 0)));

/** containerd's `io.containerd.cgroups.v2.Metrics` from the guest's cgroup v2 reading. */
export function metricsOf(s: ContainerStats): Any {
  const m = create(MetricsSchema, {
    cpu: {
      usageUsec: big(s.cpu.usageUsec),
      userUsec: big(s.cpu.userUsec),
      systemUsec: big(s.cpu.systemUsec),
      nrPeriods: big(s.cpu.nrPeriods),
      nrThrottled: big(s.cpu.nrThrottled),
    },
    memory: {
      usage: big(s.memory.usage),
      usageLimit: s.memory.limit === null ? 18446744073709551615n : big(s.memory.limit),
      anon: big(s.memory.anon),
      file: big(s.memory.file),
    },
    memoryEvents: { oomKill: big(s.memory.oomKills) },
    pids: { current: big(s.pids.current), limit: big(s.pids.limit) },
  });
  return { $typeName: 'google.protobuf.Any', typeUrl: MetricsSchema.typeName, value: toBinary(MetricsSchema, m) };
}

/** Update's LinuxResources (JSON) to the agent's `update` body. */
export function resourcesOf(v: unknown): Record<string, unknown> {
  const r = (v ?? {}) as {
    memory?: { limit?: number };
    cpu?: { quota?: number; period?: number };
    pids?: { limit?: number };
  };
  return {
    ...(r.memory?.limit !== undefined ? { memory: { limit: r.memory.limit } } : {}),
    ...(r.cpu?.quota !== undefined || r.cpu?.period !== undefined
      ? { cpu: { quota: r.cpu.quota, period: r.cpu.period } }
      : {}),
    ...(r.pids?.limit !== undefined ? { pids: { limit: r.pids.limit } } : {}),
  };
}

export function taskService(tasks: ShimTasks, agent: AgentClient, onShutdown: () => void) {
  const ex = (execId: string) => execId || undefined;
  return {
    async create(r: {
      id: string;
      bundle: string;
      rootfs: { type: string; source: string; target: string; options: string[] }[];
      terminal: boolean;
      stdin: string;
      stdout: string;
      stderr: string;
      options?: Any;
    }) {
      const configPath = configPathOf(r.options);
      const pid = await tasks.create({
        ...r,
        rootfs: r.rootfs.map((m) => ({ ...m })),
        ...(configPath ? { configPath } : {}),
      });
      return { pid };
    },
    async start(r: { id: string; execId: string }) {
      return { pid: await tasks.start(r.id, ex(r.execId)) };
    },
    async state(r: { id: string; execId: string }) {
      const v = await agent.state(r.id, ex(r.execId));
      const task = 'bundle' in v ? v : undefined;
      return {
        id: r.id,
        execId: r.execId,
        bundle: task?.bundle ?? '',
        pid: v.pid,
        status: STATUS[v.status] ?? Status.UNKNOWN,
        stdin: task?.stdin ?? '',
        stdout: task?.stdout ?? '',
        stderr: task?.stderr ?? '',
        terminal: v.terminal,
        exitStatus: v.exitStatus,
        ...(v.exitedAt ? { exitedAt: timestampFromMs(v.exitedAt) } : {}),
      };
    },
    async kill(r: { id: string; execId: string; signal: number; all: boolean }) {
      await agent.kill(r.id, ex(r.execId), r.signal || 15, r.all);
      return {};
    },
    async wait(r: { id: string; execId: string }) {
      const x = await tasks.wait(r.id, ex(r.execId));
      return { exitStatus: x.exitStatus, exitedAt: timestampFromMs(x.exitedAt) };
    },
    async delete(r: { id: string; execId: string }) {
      const x = await tasks.delete(r.id, ex(r.execId));
      return { pid: x.pid, exitStatus: x.exitStatus, exitedAt: timestampFromMs(x.exitedAt) };
    },
    async pids(r: { id: string }) {
      const { pids } = await agent.pids(r.id);
      return { processes: pids.map(({ pid }) => ({ pid })) };
    },
    async exec(r: {
      id: string;
      execId: string;
      terminal: boolean;
      stdin: string;
      stdout: string;
      stderr: string;
      spec?: Any;
    }) {
      await tasks.exec({ ...r, spec: jsonAny(r.spec, 'the exec spec') });
      return {};
    },
    async resizePty(r: { id: string; execId: string; width: number; height: number }) {
      await agent.resize(r.id, ex(r.execId), r.width, r.height);
      return {};
    },
    async closeIO(r: { id: string; execId: string; stdin: boolean }) {
      if (r.stdin) tasks.closeIO(r.id, ex(r.execId));
      return {};
    },
    async pause(r: { id: string }) {
      await tasks.pause(r.id);
      return {};
    },
    async resume(r: { id: string }) {
      await tasks.resume(r.id);
      return {};
    },
    async checkpoint(): Promise<Record<string, never>> {
      throw err.notImplemented('checkpoint is not supported by Corral (nor by Kata)');
    },
    async update(r: { id: string; resources?: Any }) {
      await agent.update(r.id, resourcesOf(jsonAny(r.resources, 'the resources')));
      return {};
    },
    async stats(r: { id: string }) {
      return { stats: metricsOf(await agent.stats(r.id)) };
    },
    async connect(r: { id: string }) {
      return { shimPid: process.pid, taskPid: tasks.pidOf(r.id), version: SHIM_VERSION };
    },
    async shutdown() {
      if (tasks.size === 0) setImmediate(onShutdown); // answer first; containerd treats a closed socket as done
      return {};
    },
  };
}
