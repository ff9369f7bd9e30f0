/** A real nats-server on a free port, per test file (the nats.js `nst` launcher idea). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type LocalNats } from '../../src/bus/server.ts';
import { connectNats } from '../../src/bus/connection.ts';
import { within } from './wait.ts';

export interface TestNats extends LocalNats {
  nc: NatsConnection;
  /** The server's data dir (its streams are in `<dir>/jetstream`). */
  dir: string;
  /** SIGKILL the server, as a crash would (no shutdown, no flush), and wait until it is gone. */
  kill(): Promise<void>;
  /**
   * Start the server again on the same port and data dir; kills it first if it still runs. Clients
   * (nats.js reconnects forever: connection.ts) find it on their own. `downMs` keeps it down that long
   * (an outage of that length: the scenario, not a wait); `whileDown` runs once it is down (awaited).
   * Resolves once the test's own connection is back.
   */
  restart(opts?: { downMs?: number; whileDown?: () => void | Promise<void> }): Promise<void>;
  cleanup(): Promise<void>;
}

const gone = (p: LocalNats['proc']) =>
  new Promise<void>((r) => {
    if (p.exitCode !== null || p.signalCode !== null) r();
    else p.once('exit', () => r());
  });

/** Resolves on the connection's next reconnect; rejects naming the connection if there is none within `timeoutMs`. */
export function reconnected(nc: NatsConnection, timeoutMs = 10_000): Promise<void> {
  return within(
    (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') return;
    })(),
    { timeoutMs, what: 'the connection to reconnect after the server restart' },
  );
}

export async function natsServer(): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-nats-'));
  let srv = await startNatsServer({ dataDir: dir, log: () => {} });
  const nc = await connectNats(srv.url, 'test');
  const t: TestNats = {
    ...srv,
    nc,
    dir,
    async kill() {
      srv.proc.kill('SIGKILL');
      await gone(srv.proc);
    },
    async restart(opts = {}) {
      const back = reconnected(nc, 10_000 + (opts.downMs ?? 0));
      back.catch(() => {}); // awaited below, after the restart
      await t.kill();
      await opts.whileDown?.();
      if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs)); // the outage's length
      srv = await startNatsServer({ dataDir: dir, port: srv.port, log: () => {} });
      Object.assign(t, {
        proc: srv.proc,
        url: srv.url,
        port: srv.port,
        version: srv.version,
        syncAlways: srv.syncAlways,
        guarantee: srv.guarantee,
      });
      await back; // the test's own connection is back before the caller goes on
    },
    stop: () => srv.stop(),
    async cleanup() {
      await nc.close().catch(() => {});
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
