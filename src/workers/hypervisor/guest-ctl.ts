/**
 * A guest's cgroup control (CTL → RESULT, docs/guest-agent.md): freeze, thaw, update and stats of a
 * container's cgroup, each answered by the RESULT with its token; and the parse of the cgroup files a
 * stats RESULT carries into {@link ContainerStats}.
 */
import { err, type CorralError } from '../../errors.ts';
import type { CgroupWrite, ContainerStats } from '../../domain/ops.ts';
import type { AgentChannel } from './agent-channel.ts';
import { encodeCtl } from './agent-encode.ts';

const ERRNO_CODE: Record<number, (m: string) => CorralError> = {
  2: err.notFound,
  17: err.exists,
  22: err.invalid,
  11: err.exhausted,
  110: err.timeout,
};
/** The code for a guest errno: ENOENT → NotFound, EEXIST → AlreadyExists, EINVAL → InvalidArgument, ... */
export const errnoError = (errno: number, message: string): CorralError =>
  (ERRNO_CODE[errno] ?? err.precondition)(message);

type Op = 'freeze' | 'thaw' | 'update' | 'stats';
const OP = { freeze: 1, thaw: 2, update: 3, stats: 4 } as const;

export class GuestCtl {
  private next = 1;
  private waiting = new Map<
    number,
    {
      resolve: (f: Record<string, string>) => void;
      reject: (e: CorralError) => void;
      timer: NodeJS.Timeout;
      what: string;
    }
  >();
  constructor(
    public sandboxId: string,
    private channel: () => Pick<AgentChannel, 'send'> | undefined,
    private timeoutMs = 10_000,
  ) {}

  /** Run one CTL; resolves with the RESULT's files (stats), rejects with the guest's errno as a code. */
  call(op: Op, containerId: string, files: CgroupWrite[] = []): Promise<Record<string, string>> {
    const token = this.next;
    this.next = this.next >= 0xfffffffe ? 1 : this.next + 1;
    const what = `${op} of ${containerId || 'every container'} in sandbox ${this.sandboxId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(token);
        reject(err.timeout(`${what}: the guest did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(token, { resolve, reject, timer, what });
      if (!this.channel()?.send(encodeCtl(token, OP[op], containerId, files)))
        this.failAll('the agent channel is closed');
    });
  }

  onResult(m: { token: number; errno: number; message: string; files: Record<string, string> }): void {
    const w = this.waiting.get(m.token);
    if (!w) return;
    this.waiting.delete(m.token);
    clearTimeout(w.timer);
    if (m.errno) w.reject(errnoError(m.errno, `${w.what}: ${m.message}`));
    else w.resolve(m.files);
  }

  failAll(why: string): void {
    for (const [t, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(err.unavailable(`${w.what}: ${why}`));
      this.waiting.delete(t);
    }
  }
}

/** `key value` lines (cpu.stat, memory.stat, memory.events) → numbers. */
function keyed(text: string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) m.set(k, Number(v));
  }
  return m;
}
const one = (text: string | undefined): number => {
  const v = Number((text ?? '').trim());
  return Number.isFinite(v) ? v : 0;
};
const limit = (text: string | undefined): number | null => {
  const t = (text ?? '').trim();
  return t === '' || t === 'max' || !/^\d+$/.test(t) ? null : Number(t);
};

/** The cgroup v2 files a stats RESULT carries → {@link ContainerStats} (a missing file counts 0 / no limit). */
export function parseStats(f: Record<string, string>): ContainerStats {
  const cpu = keyed(f['cpu.stat']);
  const mem = keyed(f['memory.stat']);
  const ev = keyed(f['memory.events']);
  return {
    cpu: {
      usageUsec: cpu.get('usage_usec') ?? 0,
      userUsec: cpu.get('user_usec') ?? 0,
      systemUsec: cpu.get('system_usec') ?? 0,
      nrPeriods: cpu.get('nr_periods') ?? 0,
      nrThrottled: cpu.get('nr_throttled') ?? 0,
    },
    memory: {
      usage: one(f['memory.current']),
      limit: limit(f['memory.max']),
      anon: mem.get('anon') ?? 0,
      file: mem.get('file') ?? 0,
      oomKills: ev.get('oom_kill') ?? 0,
    },
    pids: { current: one(f['pids.current']), limit: limit(f['pids.max']) },
  };
}
