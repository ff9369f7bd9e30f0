/**
 * Supervises child processes (the workers) the way OTP does: a child that exits is restarted after a
 * growing back-off; more than `maxRestarts` within `windowMs` means something is badly wrong, and the
 * supervisor gives up (calls `onGiveUp`) instead of looping.
 */
import { spawn, type ChildProcess } from 'node:child_process';

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

export class Supervisor {
  private children = new Map<string, { spec: ChildSpec; proc?: ChildProcess; restarts: number[]; timer?: NodeJS.Timeout }>();
  private stopping = false;
  constructor(private o: SupervisorOptions = {}) {}

  add(spec: ChildSpec): void {
    this.children.set(spec.name, { spec, restarts: [] });
    this.launch(spec.name);
  }

  pid(name: string): number | undefined {
    return this.children.get(name)?.proc?.pid;
  }

  private launch(name: string): void {
    const c = this.children.get(name);
    if (!c || this.stopping) return;
    const proc = spawn(c.spec.command, c.spec.args, { env: c.spec.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit'] });
    c.proc = proc;
    if (proc.pid) this.o.onStart?.(name, proc.pid);
    proc.once('exit', (code, signal) => {
      if (c.proc !== proc) return;
      c.proc = undefined;
      if (this.stopping) return;
      this.o.onExit?.(name, code, signal);
      const now = Date.now();
      c.restarts = c.restarts.filter((t) => now - t < (this.o.windowMs ?? 30_000));
      if (c.restarts.length >= (this.o.maxRestarts ?? 5)) { this.o.onGiveUp?.(name); return; }
      c.restarts.push(now);
      const delay = Math.min(5_000, 100 * 2 ** (c.restarts.length - 1));
      c.timer = setTimeout(() => this.launch(name), delay);
    });
  }

  /** SIGTERM every child, SIGKILL after `graceMs`; resolves when all have exited. */
  async stop(graceMs = 15_000): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.children.values()].map((c) => {
      clearTimeout(c.timer);
      const p = c.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      return new Promise<void>((resolve) => {
        const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
        p.once('exit', () => { clearTimeout(t); resolve(); });
        p.kill('SIGTERM');
      });
    }));
  }
}

/** How to run this CLI again as a child: node with tsx, the same entry point. */
export function selfCommand(): { command: string; prefix: string[] } {
  const entry = new URL('../cli/main.ts', import.meta.url).pathname;
  return { command: process.execPath, prefix: ['--import', import.meta.resolve('tsx'), entry] };
}
