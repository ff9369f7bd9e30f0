/**
 * One process's stdin as the host feeds it (docs/guest-agent.md, "Stdin flow control"): at most
 * STDIN_WINDOW bytes sent and not yet credited back by the guest's WINDOW frames. `write` resolves once
 * its bytes were sent within the window: that is where a producer faster than the guest waits.
 */
import { err, type CorralError } from '../../errors.ts';
import { STDIN_CHUNK, STDIN_WINDOW } from './agent-frames.ts';

export class StdinWindow {
  private room = STDIN_WINDOW;
  private chain: Promise<void> = Promise.resolve();
  private wake?: () => void;
  private ended?: CorralError;

  /** `send` puts one STDIN frame (at most STDIN_CHUNK bytes) on the channel; false when it is closed. */
  constructor(private send: (chunk: Uint8Array) => boolean) {}

  /** Bytes the host may still send now. */
  get available(): number {
    return this.room;
  }

  /** Send `data` in order after what was written before; resolves once all of it was sent. */
  write(data: Uint8Array): Promise<void> {
    const p = this.chain.then(() => this.pump(data));
    this.chain = p.catch(() => {
      /* the writer gets the error; later writes still run (and fail the same way) */
    });
    return p;
  }

  /** Resolves once every write queued so far has been sent (or has failed). */
  drained(): Promise<void> {
    return this.chain;
  }

  /** The guest's WINDOW: it wrote (or dropped) this many bytes. */
  credit(bytes: number): void {
    this.room = Math.min(STDIN_WINDOW, this.room + bytes);
    this.poke();
  }

  /** A resynchronised channel: the guest's count is unknown, start again from a full window. */
  reset(): void {
    this.room = STDIN_WINDOW;
    this.poke();
  }

  /** The process is gone: pending and later writes fail with `e`. */
  end(e: CorralError): void {
    this.ended ??= e;
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private async pump(data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.byteLength;) {
      const n = Math.min(STDIN_CHUNK, data.byteLength - at);
      while (!this.ended && this.room < n) await new Promise<void>((r) => (this.wake = r));
      if (this.ended) throw this.ended;
      if (!this.send(data.subarray(at, at + n))) throw err.unavailable('the agent channel is closed');
      this.room -= n;
      at += n;
    }
  }
}
