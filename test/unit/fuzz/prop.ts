/**
 * `test.prop` with @fast-check/vitest's API (`test.prop([arbitraries], params)(name, property, timeout?)`),
 * built on fast-check and vitest directly. @fast-check/vitest 0.5 wraps every permutation of vitest 4.1's
 * chain modifiers when it loads: about 1.9 s of CPU per test file (measured with --cpu-prof: its
 * `buildTest` and vitest's chain `create`, and the garbage they leave), which alone would take the fuzz
 * set past its 20 s budget on a 2-core machine. The API is the same, so going back to it is this import:
 * `import { fc, test } from '@fast-check/vitest'`.
 */
import fc from 'fast-check';
import { test as vitestTest } from 'vitest';

type Arbitraries<Ts extends unknown[]> = { [K in keyof Ts]: fc.Arbitrary<Ts[K]> };

function prop<Ts extends [unknown, ...unknown[]]>(arbitraries: Arbitraries<Ts>, params: fc.Parameters<Ts> = {}) {
  return (name: string, property: (...args: Ts) => unknown, timeout?: number) =>
    vitestTest(
      name,
      () =>
        fc.assert(
          fc.asyncProperty(...(arbitraries as unknown as [fc.Arbitrary<unknown>]), async (...args: unknown[]) => {
            await property(...(args as Ts));
          }) as unknown as fc.IAsyncProperty<Ts>,
          params,
        ),
      timeout,
    );
}

/** vitest's `test` (a copy: vitest's own is left as it is) with `.prop`. */
export const test = Object.assign(vitestTest.extend({}), { prop });
export { fc };
