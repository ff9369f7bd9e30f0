/** The CorralError a failed boot surfaces: the cause, then the tail of the serial console and QEMU's stderr. */
import { readFileSync } from 'node:fs';
import { CorralError, err } from '../../errors.ts';

/** How QEMU ended: its exit code or the signal that killed it (both null when unknown: not our child). */
export type ExitInfo = { code: number | null; signal: string | null };

/** What a failed launch knows about its QEMU. */
export interface FailedVm {
  sandboxId: string;
  accel: string;
  tails?: { console: string; stderr: string };
  spawnError?: Error;
  exitInfo?: ExitInfo;
  /** We asked QEMU to go; without it, an exit is QEMU dying on its own. */
  requested?: boolean;
}

export const fmtExit = (e?: ExitInfo): string => (e?.signal ? `signal ${e.signal}` : `code ${e?.code ?? '?'}`);

/** An aborted boot: the signal's CorralError reason keeps its code; a DOM TimeoutError → Timeout; else Cancelled. */
export function abortError(signal: AbortSignal, sandboxId: string, detail = ''): CorralError {
  const r: unknown = signal.reason;
  const base =
    r instanceof CorralError
      ? r
      : r instanceof Error && r.name === 'TimeoutError'
        ? err.timeout('boot passed its deadline')
        : err.cancelled('boot was cancelled');
  return new CorralError(base.code, `sandbox ${sandboxId}: ${base.message}${detail}`, { cause: r });
}

export function bootError(e: unknown, vm: FailedVm, signal: AbortSignal): CorralError {
  const detail =
    `\n--- serial console (last lines) ---\n${vm.tails?.console ?? ''}` +
    `\n--- qemu stderr ---\n${vm.tails?.stderr ?? ''}`;
  if (signal.aborted) return abortError(signal, vm.sandboxId, detail);
  let c = e instanceof CorralError ? e : err.internal(e instanceof Error ? e.message : String(e), e);
  if (vm.spawnError) c = err.internal(`cannot run QEMU: ${vm.spawnError.message}`);
  else if (vm.exitInfo && !vm.requested)
    c = err.internal(`QEMU (${vm.accel}) exited (${fmtExit(vm.exitInfo)}) before the guest agent was ready`);
  return new CorralError(c.code, `sandbox ${vm.sandboxId}: ${c.message}${detail}`, { cause: e });
}

/** The last `lines` lines of a log file ('(none)' when it cannot be read). */
export function tailOf(path: string, lines = 25): string {
  try {
    return readFileSync(path, 'utf8').slice(-6144).split('\n').filter(Boolean).slice(-lines).join('\n');
  } catch {
    return '(none)';
  }
}
