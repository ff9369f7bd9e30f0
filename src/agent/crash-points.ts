/**
 * Test-only: crash points on the agent's effect path. With the test switch on (CORRAL_TEST_FAULTS=1)
 * and CORRAL_TEST_CRASH=<point>, the agent SIGKILLs itself when it reaches that point (a crash: no
 * shutdown, no flush), so a test can prove recovery at every step. Production composes in nothing.
 */
import type { Probe } from './effects.ts';

/** A probe that kills this process at `point`, or none when no point is armed. */
export function crashProbe(point: string | undefined): Probe | undefined {
  if (!point) return undefined;
  return (at) => {
    if (at === point) process.kill(process.pid, 'SIGKILL');
  };
}
