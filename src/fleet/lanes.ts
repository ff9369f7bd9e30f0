/**
 * One at a time per key: each call for a key starts once the previous one for it settled. A writer
 * uses it for its compare-and-swap writes to one registry entry: it would only lose races against
 * itself, and on nats-server 2.9 clusters two such writes within a few ms can both succeed (#4320).
 */
export class Lanes {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, f: () => Promise<T>): Promise<T> {
    const next = (this.tails.get(key) ?? Promise.resolve())
      .catch(() => {
        // The previous call's failure is its caller's (it got the rejection); this one only waits its turn.
      })
      .then(f);
    this.tails.set(key, next);
    void next
      .finally(() => {
        if (this.tails.get(key) === next) this.tails.delete(key);
      })
      .catch(() => {
        // The caller gets `next` and its rejection; this copy only cleans up the lane.
      });
    return next;
  }

  /** Resolves once every call made so far has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
  }
}
