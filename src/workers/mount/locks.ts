/**
 * Path locks: an op holds its paths until it ends, and waits for any running op whose path is the
 * same, an ancestor or a descendant (a `removeTree` must not run while a mount appears below it).
 * Ops on unrelated sandboxes run concurrently. Waiting counts against the op's deadline.
 */
import { isAtOrBelow } from './mountinfo.ts';
import { err } from '../../errors.ts';

interface Held {
  paths: readonly string[];
  done: Promise<void>;
}

const overlaps = (a: string, b: string) => isAtOrBelow(a, b) || isAtOrBelow(b, a);

export class PathLocks {
  private held = new Set<Held>();

  async acquire(paths: readonly string[], signal?: AbortSignal): Promise<() => void> {
    for (;;) {
      if (signal?.aborted)
        throw signal.reason instanceof Error ? signal.reason : err.cancelled('cancelled while waiting for a path lock');
      const busy = [...this.held].filter((h) => h.paths.some((a) => paths.some((b) => overlaps(a, b))));
      if (busy.length === 0) break;
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        signal?.addEventListener('abort', onAbort, { once: true });
        void Promise.race(busy.map((h) => h.done)).then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    let release!: () => void;
    const entry: Held = {
      paths,
      done: new Promise<void>((r) => {
        release = r;
      }),
    };
    this.held.add(entry);
    return () => {
      if (!this.held.delete(entry)) return;
      release();
    };
  }
}
