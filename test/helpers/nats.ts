/** A real nats-server on a free port, per test file (the nats.js `nst` launcher idea). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type LocalNats } from '../../src/bus/server.ts';
import { connectNats } from '../../src/bus/connection.ts';

export interface TestNats extends LocalNats {
  nc: NatsConnection;
  cleanup(): Promise<void>;
}

export async function natsServer(): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-nats-'));
  const srv = await startNatsServer({ dataDir: dir });
  const nc = await connectNats(srv.url, 'test');
  return {
    ...srv,
    nc,
    async cleanup() {
      await nc.close().catch(() => {});
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
