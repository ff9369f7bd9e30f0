/**
 * Security between nodes (decision 0007): a nats-server with the authorization block of
 * infra/nats/gen-creds.ts. Node A's user may use A's subjects only: its worker subjects answer, B's
 * worker subjects and B's records are refused (a permission violation, reported by the server to the
 * client); the controller user reaches every node's createInline; no or a wrong seed cannot connect.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { createUser } from '@nats-io/nkeys';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from '../../src/bus/connection.ts';
import { ensureEventStream, EventLog } from '../../src/bus/eventlog.ts';
import { request } from '../../src/bus/rpc.ts';
import { serve } from '../../src/bus/serve.ts';
import { startNatsServer, type LocalNats } from '../../src/bus/server.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { NodeRegistry } from '../../src/fleet/registry.ts';
import { generateCreds, type GeneratedCreds } from '../../infra/nats/gen-creds.ts';
import { waitFor, within } from '../helpers/wait.ts';

let dir: string;
let srv: LocalNats;
let creds: GeneratedCreds;
const conns: NatsConnection[] = [];
const as = async (who: string) => {
  const nc = await connectNats(srv.url, `test-${who}`, { nkeySeedFile: creds.seedFiles[who] });
  conns.push(nc);
  return nc;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'corral-nkeys-'));
  creds = generateCreds({ dir: join(dir, 'creds'), nodes: ['A', 'B'] });
  srv = await startNatsServer({ dataDir: join(dir, 'nats'), log: () => {}, extra: creds.authorization });
});
afterAll(async () => {
  for (const nc of conns) await nc.close().catch(() => {});
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The next permission violation the server reports on `nc`; rejects if none comes within `ms`. */
function nextViolation(nc: NatsConnection, ms = 3000): Promise<InstanceType<typeof errors.PermissionViolationError>> {
  const v = within(
    (async () => {
      for await (const s of nc.status())
        if (s.type === 'error' && s.error instanceof errors.PermissionViolationError) return s.error;
      throw new Error('the connection closed');
    })(),
    { timeoutMs: ms, what: 'a permission violation reported by the server' },
  );
  v.catch(() => {}); // awaited by the caller, after it provoked the violation
  return v;
}

describe('per-node NKEY users', () => {
  it('writes 0600 seeds and keeps them when run again', () => {
    const again = generateCreds({ dir: join(dir, 'creds'), nodes: ['A', 'B'] });
    expect(again.publicKeys).toEqual(creds.publicKeys);
    expect(Object.keys(creds.seedFiles).sort()).toEqual(['A', 'B', 'admin', 'controller']);
  });

  it('node A can serve and request its own worker subjects, and append its own records', async () => {
    const a = await as('A');
    const aWorker = await as('A'); // its worker process connects with the node's seed, too
    const sub = serve(aWorker, subjects.worker('A', 'mount', 'scan'), () => ({ ok: true }));
    await aWorker.flush();
    expect(await request(a, subjects.worker('A', 'mount', 'scan'), {}, 3000)).toEqual({ ok: true });
    sub.unsubscribe();
    const admin = await as('admin');
    await ensureEventStream(admin);
    await ensureEventStream(a); // an agent brings the stream's limits up to date at start
    expect(await new EventLog(a, 'A').append('sb1', 'created', {})).toBeGreaterThan(0);
    const reg = await NodeRegistry.open(a); // creates CORRAL_NODES (the first agent does)
    expect(await reg.kv.put('A', new Uint8Array([1]))).toBeGreaterThan(0); // its own registry key
    expect([...(await reg.kv.get('A'))!.value]).toEqual([1]);
    await reg.kv.delete('A');
  });

  it("node A cannot publish to node B's worker subjects, nor subscribe to them", async () => {
    const a = await as('A');
    const b = await as('B');
    const got: string[] = [];
    const bsub = b.subscribe(subjects.worker('B', 'mount', '>'), {
      callback: (_e, m) => {
        got.push(m.subject);
      },
    });
    await b.flush();

    const violation = nextViolation(a);
    a.publish(subjects.worker('B', 'mount', 'mountRootfs'), new Uint8Array([0x80]));
    const v = await violation;
    expect(v?.operation).toBe('publish');
    expect(v?.subject).toBe('corral.v1.node.B.worker.mount.mountRootfs');
    // a request is refused the same way (it never reaches B's worker)
    await expect(request(a, subjects.worker('B', 'mount', 'mountRootfs'), {}, 1000)).rejects.toThrow();
    // Neither reached B: once the server has read all of A's messages (A's flush), a marker published
    // after them by a user allowed to reach B's subject arrives after anything of A's would have.
    await a.flush();
    const admin = await as('admin');
    const marker = subjects.worker('B', 'mount', 'marker');
    admin.publish(marker, new Uint8Array([0x80]));
    await waitFor(() => got.includes(marker), { what: 'the marker at B' });
    expect(got).toEqual([marker]);

    const subViolation = nextViolation(a);
    const asub = a.subscribe(subjects.worker('B', 'mount', '>'));
    const closed = asub.closed;
    const sv = await subViolation;
    expect(sv?.operation).toBe('subscription');
    expect(sv?.subject).toBe('corral.v1.node.B.worker.mount.>');
    expect(await closed).toBeInstanceOf(errors.PermissionViolationError);

    // nor B's Task API, records or registry key
    const v2 = nextViolation(a);
    a.publish(subjects.task('B', 'delete'), new Uint8Array([0x80]));
    expect((await v2)?.subject).toBe('corral.v1.node.B.task.delete');
    const v3 = nextViolation(a);
    await expect(
      new EventLog(a, 'B', { deadlineMs: 1500, attemptTimeoutMs: 500 }).append('sbX', 'created', {}),
    ).rejects.toThrow();
    expect((await v3)?.subject).toBe('corral.v1.evt.B.sbX.created');
    const kv = await new Kvm(a).open('CORRAL_NODES');
    const v4 = nextViolation(a);
    await expect(kv.put('B', new Uint8Array([1]), { timeout: 1000 } as never)).rejects.toThrow();
    expect((await v4)?.subject).toBe('$KV.CORRAL_NODES.B');
    expect(a.isClosed()).toBe(false); // a violation does not cost the node its connection
    bsub.unsubscribe();
  });

  it("the controller reaches every node's createInline", async () => {
    const c = await as('controller');
    const nodes = { A: await as('A'), B: await as('B') };
    for (const [n, nc] of Object.entries(nodes)) {
      const sub = serve(nc, subjects.nodeCreateInline(n), () => ({ node: n }));
      await nc.flush();
      expect(await request(c, subjects.nodeCreateInline(n), { id: 'x' }, 3000)).toEqual({ node: n });
      sub.unsubscribe();
    }
  });

  it('no seed, an unknown seed or a world-readable seed file cannot connect', async () => {
    await expect(connectNats(srv.url, 'anon', { timeoutMs: 2000 })).rejects.toThrow(
      /Authorization|authentication|cannot reach/i,
    );
    const stranger = join(dir, 'stranger.nk');
    writeFileSync(stranger, `${new TextDecoder().decode(createUser().getSeed())}\n`, { mode: 0o600 });
    await expect(connectNats(srv.url, 'stranger', { nkeySeedFile: stranger, timeoutMs: 2000 })).rejects.toThrow(
      /Authorization|cannot reach/i,
    );
    const open = join(dir, 'open.nk');
    writeFileSync(open, 'x', { mode: 0o644 });
    await expect(connectNats(srv.url, 'open', { nkeySeedFile: open })).rejects.toThrow(/readable by group or others/);
  });
});
