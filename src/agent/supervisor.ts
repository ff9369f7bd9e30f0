/**
 * Supervises child processes (the workers) the way OTP does: a child that exits is restarted after a
 * growing back-off; more than `maxRestarts` within `windowMs` means something is badly wrong, and the
 * supervisor gives up (calls `onGiveUp`) instead of looping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { inCheckout } from '../util/checkout.ts';
import { procStart } from '../workers/procfs.ts';

export interface ChildSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export interface SupervisorOptions {
  maxRestarts?: number;
  windowMs?: number;
  onExit?: (name: string, code: number | null, signal: string | null) => void;
  onGiveUp?: (name: string) => void;
  onStart?: (name: string, pid: number) => void;
}

/** A child that outlived a previous supervisor: its pid, and whether that pid is still the same process. */
type Adopted = { pid: number; alive: () => boolean };
type Child = { spec: ChildSpec; proc?: ChildProcess; restarts: number[]; timer?: NodeJS.Timeout; adopted?: Adopted };

export class Supervisor {
  private children = new Map<string, Child>();
  private stopping = false;
  constructor(private o: SupervisorOptions = {}) {}

  add(spec: ChildSpec): void {
    this.children.set(spec.name, { spec, restarts: [] });
    this.launch(spec.name);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid ?? this.children.get(name)?.adopted?.pid;
  }

  /**
   * Take over a child that outlived a previous supervisor (the agent was killed; its workers were not):
   * it is watched by pid and start time (a zombie or a reused pid is gone), and started anew when it dies.
   */
  adopt(spec: ChildSpec, pid: number): void {
    const c: Child = { spec, restarts: [], adopted: { pid, alive: aliveCheck(pid) } };
    this.children.set(spec.name, c);
    const watch = setInterval(() => {
      if (!c.adopted?.alive()) {
        clearInterval(watch);
        c.adopted = undefined;
        if (this.stopping) return;
        this.o.onExit?.(spec.name, null, 'gone');
        this.launch(spec.name);
      }
    }, 250);
    c.timer = watch;
  }

  private launch(name: string): void {
    const c = this.children.get(name);
    if (!c || this.stopping) return;
    const proc = spawn(c.spec.command, c.spec.args, {
      env: c.spec.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    c.proc = proc;
    if (proc.pid) this.o.onStart?.(name, proc.pid);
    proc.once('exit', (code, signal) => {
      if (c.proc !== proc) return;
      c.proc = undefined;
      if (this.stopping) return;
      this.o.onExit?.(name, code, signal);
      const now = Date.now();
      c.restarts = c.restarts.filter((t) => now - t < (this.o.windowMs ?? 30_000));
      if (c.restarts.length >= (this.o.maxRestarts ?? 5)) {
        this.o.onGiveUp?.(name);
        return;
      }
      c.restarts.push(now);
      const delay = Math.min(5_000, 100 * 2 ** (c.restarts.length - 1));
      c.timer = setTimeout(() => this.launch(name), delay);
    });
  }

  /** SIGTERM every child, SIGKILL after `graceMs`; resolves when all have exited. */
  async stop(graceMs = 15_000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.children.values()].map(async (c) => {
        clearTimeout(c.timer);
        clearInterval(c.timer);
        if (c.adopted) await stopPid(c.adopted, graceMs);
        const p = c.proc;
        if (!p || p.exitCode !== null || p.signalCode !== null) return;
        return new Promise<void>((resolve) => {
          const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
          p.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          p.kill('SIGTERM');
        });
      }),
    );
  }
}

/** Whether `pid` is still the process it is now: a zombie, or a pid given to another process since, is gone. */
function aliveCheck(pid: number): () => boolean {
  const ticks = procStart(pid)?.ticks;
  return () => ticks !== undefined && procStart(pid)?.ticks === ticks;
}

async function stopPid({ pid, alive }: Adopted, graceMs: number): Promise<void> {
  if (!alive()) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (const until = Date.now() + graceMs; alive() && Date.now() < until;) await new Promise((r) => setTimeout(r, 100));
  if (alive())
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
}

/**
 * How to run this CLI again as a child: node on bin/corral.mjs, which runs the compiled dist/ when it is current
 * (a start without compiling TypeScript: what recovery's time to serve again counts) and src/ through tsx
 * otherwise (bin/dist.mjs).
 */
export function selfCommand(): { command: string; prefix: string[] } {
  return { command: process.execPath, prefix: [inCheckout('bin/corral.mjs')] };
}
