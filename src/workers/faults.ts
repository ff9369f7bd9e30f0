/**
 * Fault injection for tests: only when the worker runs with CORRAL_TEST_FAULTS=1. A test arms a fault
 * for the next call(s) of an op through the `__fault` op; the worker then fails, hangs until the op's
 * deadline, or SIGKILLs itself — before the op (`crash`) or after its side effect but before the reply
 * (`crashAfter`, the case where only a scan can find what was done).
 */
import { err } from '../errors.ts';
import type { OpContext, OpHandler } from './harness.ts';

export type FaultMode = 'fail' | 'hang' | 'crash' | 'crashAfter';
const MODES: FaultMode[] = ['fail', 'hang', 'crash', 'crashAfter'];

export class Faults {
  private armed = new Map<string, { mode: FaultMode; times: number }>();

  arm(req: Record<string, unknown>): { armed: string[] } {
    if (req.clear === true) this.armed.clear();
    if (typeof req.op === 'string') {
      if (!MODES.includes(req.mode as FaultMode)) throw err.invalid(`fault mode must be one of ${MODES.join(', ')}`);
      this.armed.set(req.op, { mode: req.mode as FaultMode, times: typeof req.times === 'number' ? req.times : 1 });
    }
    return { armed: [...this.armed.keys()] };
  }

  private take(op: string): FaultMode | undefined {
    const f = this.armed.get(op);
    if (!f) return undefined;
    if (--f.times <= 0) this.armed.delete(op);
    return f.mode;
  }

  /** Wrap handlers so armed faults fire; adds the `__fault` op. */
  wrap(handlers: Record<string, OpHandler>): Record<string, OpHandler> {
    const out: Record<string, OpHandler> = { __fault: async (req) => this.arm(req) };
    for (const [op, h] of Object.entries(handlers)) {
      out[op] = async (req, ctx: OpContext) => {
        const mode = this.take(op);
        if (mode === 'fail') throw err.internal(`injected fault: ${op} failed`);
        if (mode === 'crash') process.kill(process.pid, 'SIGKILL');
        if (mode === 'hang') {
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
          throw err.timeout(`${op} passed its deadline (injected hang)`);
        }
        const r = await h(req, ctx);
        if (mode === 'crashAfter') process.kill(process.pid, 'SIGKILL');
        return r;
      };
    }
    return out;
  }
}

export const faultsEnabled = (env: NodeJS.ProcessEnv) => env.CORRAL_TEST_FAULTS === '1';
