/**
 * The one per-key serialiser: each call for a key starts once the previous one for that key settled
 * (whether it resolved or rejected); calls for different keys run concurrently. Used for
 *  - the event log's appends, one sandbox at a time, so a retried record never lands after a later one
 *    (src/bus/eventlog.ts);
 *  - a writer's compare-and-swap writes to one registry entry: it would only lose races against itself,
 *    and on nats-server 2.9 clusters two such writes within a few ms can both succeed (#4320)
 *    (src/fleet/agent-registration.ts, src/fleet/controller.ts);
 *  - useradd/userdel of one process, which take /etc/passwd's lock (src/workers/hypervisor/vmm-user.ts).
 * A key's entry is dropped once its last call settled, so the map holds only busy keys.
 */
export class Lanes<K = string> {
  private readonly tails = new Map<K, Promise<unknown>>();

  run<T>(key: K, f: () => Promise<T>): Promise<T> {
    const next = (this.tails.get(key) ?? Promise.resolve())
      .catch(() => {
        // The previous call's outcome is its own caller's to handle: here it only says "done".
      })
      .then(f);
    this.tails.set(key, next);
    void next
      .finally(() => {
        if (this.tails.get(key) === next) this.tails.delete(key);
      })
      .catch(() => {
        // The rejection is returned to run's caller; this copy of it only cleans up.
      });
    return next;
  }

  /** Resolves once every call made so far has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
  }
}
