/**
 * Acknowledged JetStream writes survive nats-server SIGKILLed in the middle of a burst, on the server
 * Corral chooses (src/bus/nats-binary.ts: `CORRAL_NATS_SERVER`, else the Debian 13 2.10.x bootstrap.sh
 * fetched, else PATH's) started by the project's own startNatsServer. Each round: 2,000 publishes, 100 of
 * them in flight at any time, acks awaited; SIGKILL once 1,000 are acknowledged (the other publishes in
 * flight die with it); start again on the same store dir; every acknowledged record of every round so far
 * is there with its sequence, subject and payload. Three rounds on one store (2.10.20 to 2.10.22 could lose
 * a stream after a few kills: docs/decisions/0012). The run asserts and prints the version and guarantee it
 * had. Also: which versions count as 2.10.23 or later, and the binary choice, with stand-in binaries that
 * only report a version.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { chooseNatsServer, natsServerBinary } from '../../src/bus/nats-binary.ts';
import {
  isDurableServer,
  natsServerConfig,
  parseNatsServerVersion,
  supportsSyncInterval,
} from '../../src/bus/nats-config.ts';
import { startNatsServer, type LocalNats } from '../../src/bus/server.ts';
import { within } from '../helpers/wait.ts';

const STREAM = 'DURKILL';
const N = 2000;
const IN_FLIGHT = 100;
const KILL_AT = 1000;
const ROUNDS = 3;

interface Acked {
  subject: string;
  payload: string;
}

const dirs: string[] = [];
const tmp = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
let running: LocalNats | undefined;
afterAll(async () => {
  await running?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const gone = (p: LocalNats['proc']) =>
  new Promise<void>((r) => {
    if (p.exitCode !== null || p.signalCode !== null) r();
    else p.once('exit', () => r());
  });

/**
 * Publishes `N` records, `IN_FLIGHT` at a time, on a connection that does not reconnect, and SIGKILLs the
 * server once `KILL_AT` are acknowledged; resolves once the server is gone with what was acknowledged.
 */
async function burstAndKill(srv: LocalNats, round: number) {
  const nc = await connect({ servers: srv.url, reconnect: false });
  const js = jetstream(nc, { timeout: 10_000 });
  const acked = new Map<number, Acked>();
  const twice: number[] = [];
  let next = 0;
  let failed = 0;
  let killed: Promise<void> | undefined;
  const worker = async () => {
    while (next < N && failed === 0) {
      const i = next++;
      const rec = { subject: `durkill.r${round}.s${i % 8}`, payload: `r${round} i${i} ${randomUUID()}` };
      try {
        const ack = await js.publish(rec.subject, rec.payload);
        if (acked.has(ack.seq)) twice.push(ack.seq);
        acked.set(ack.seq, rec);
        if (acked.size === KILL_AT) {
          srv.proc.kill('SIGKILL'); // mid-burst: IN_FLIGHT - 1 publishes are on their way
          killed = gone(srv.proc);
        }
      } catch {
        failed++; // the connection died with the server: not acknowledged, nothing claimed
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  await nc.close().catch(() => {});
  expect(twice).toEqual([]); // no sequence acknowledged for two records
  expect(killed).toBeDefined();
  await within(killed!, { what: 'the SIGKILLed nats-server to exit' });
  return { acked, failed, sent: next };
}

/** Every acknowledged record at its sequence, with its subject and payload; the ones missing or changed. */
async function missing(nc: NatsConnection, all: Map<number, Acked>): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  const bad: string[] = [];
  const seqs = [...all.keys()];
  for (let k = 0; k < seqs.length; k += IN_FLIGHT)
    await Promise.all(
      seqs.slice(k, k + IN_FLIGHT).map(async (seq) => {
        const want = all.get(seq)!;
        const got = await jsm.streams.getMessage(STREAM, { seq }).catch(() => null);
        if (!got || got.subject !== want.subject || got.string() !== want.payload)
          bad.push(`seq ${seq}: want ${want.subject} "${want.payload}", got ${got ? got.subject : 'nothing'}`);
      }),
    );
  return bad;
}

describe('acknowledged writes survive nats-server SIGKILLed mid-burst', () => {
  it(`${ROUNDS} rounds of ${N} publishes, SIGKILL at ${KILL_AT} acks, restart on the same store dir`, async () => {
    const dir = tmp('corral-durkill-');
    const lines: string[] = [];
    let srv = await startNatsServer({ dataDir: dir, log: (l) => lines.push(l) });
    running = srv;
    // which server and which guarantee this run had
    expect(srv.binary).toBe(process.env.CORRAL_NATS_SERVER || chooseNatsServer().binary);
    expect(srv.syncAlways).toBe(supportsSyncInterval(srv.version));
    expect(lines).toEqual([srv.guarantee]);
    expect(/^\s*sync_interval: always$/m.test(readFileSync(srv.configFile, 'utf8'))).toBe(srv.syncAlways);
    if (isDurableServer(srv.version))
      expect(srv.guarantee).toBe(
        `nats-server ${srv.version!.text}: JetStream flushes every write (sync_interval: always): ` +
          'an acknowledged event survives a process kill, an OS crash and power loss',
      );
    else if (!srv.syncAlways)
      expect(srv.guarantee).toMatch(
        /does not support sync_interval: .*lose the last acknowledged writes \(a process kill cannot\)$/,
      );
    console.log(`durability-kill: ${srv.binary} (nats-server ${srv.version?.text ?? '?'}): ${srv.guarantee}`);

    const setup = await connect({ servers: srv.url, reconnect: false });
    const jsm = await jetstreamManager(setup);
    await jsm.streams.add({ name: STREAM, subjects: ['durkill.>'], storage: StorageType.File });
    await setup.close();

    const all = new Map<number, Acked>();
    for (let round = 1; round <= ROUNDS; round++) {
      const started = performance.now();
      const { acked, failed, sent } = await burstAndKill(srv, round);
      const burstMs = Math.round(performance.now() - started);
      expect(acked.size).toBeGreaterThanOrEqual(KILL_AT);
      expect(acked.size).toBeLessThan(N); // the kill did land mid-burst
      for (const [seq, rec] of acked) {
        expect(all.has(seq)).toBe(false); // a sequence is never handed out twice, across restarts too
        all.set(seq, rec);
      }
      srv = running = await startNatsServer({ dataDir: dir, log: () => {} });
      const nc = await connect({ servers: srv.url, reconnect: false });
      try {
        const info = await (await jetstreamManager(nc)).streams.info(STREAM);
        expect(info.state.last_seq).toBeGreaterThanOrEqual(Math.max(...all.keys()));
        expect(await missing(nc, all)).toEqual([]);
        console.log(
          `durability-kill round ${round}: ${acked.size} acknowledged of ${sent} sent (${failed} died with the ` +
            `server) in ${burstMs} ms; after the restart all ${all.size} acknowledged records so far are there ` +
            `(stream: ${info.state.messages} records, last seq ${info.state.last_seq})`,
        );
      } finally {
        await nc.close();
      }
    }
    await srv.stop();
  });
});

describe('2.10.23 and later (nats-config.ts)', () => {
  it.each([
    ['2.9.10', false],
    ['2.10.0', false],
    ['2.10.22', false],
    ['2.10.23-RC.1', false],
    ['2.10.23', true],
    ['2.10.27', true],
    ['2.11.0-RC.1', true],
    ['3.0.0', true],
  ])('%s: %s', (v, yes) => {
    const version = parseNatsServerVersion(v);
    expect(isDurableServer(version)).toBe(yes);
    const { guarantee } = natsServerConfig({ version, storeDir: '/s' });
    expect(guarantee.includes('before 2.10.23 could lose a whole stream')).toBe(supportsSyncInterval(version) && !yes);
  });
});

describe('which nats-server Corral runs (nats-binary.ts)', () => {
  /** A stand-in that only answers `--version` (or fails, given no version). */
  const standIn = (dir: string, name: string, version?: string) => {
    const f = join(dir, name);
    writeFileSync(f, version ? `#!/bin/sh\necho "nats-server: v${version}"\n` : '#!/bin/sh\nexit 1\n');
    chmodSync(f, 0o755);
    return f;
  };
  const saved = process.env.CORRAL_NATS_SERVER;
  afterEach(() => {
    if (saved === undefined) delete process.env.CORRAL_NATS_SERVER;
    else process.env.CORRAL_NATS_SERVER = saved;
  });

  it("the fetched one when newer than PATH's (or PATH has none); else PATH's", () => {
    const d = tmp('corral-natsbin-');
    const old = standIn(d, 'path-2.9', '2.9.10');
    const fetched = standIn(d, 'fetched-2.10', '2.10.27');
    expect(chooseNatsServer({ fetched, onPath: old })).toMatchObject({
      binary: fetched,
      version: { text: '2.10.27' },
      why: "fetched by bootstrap.sh, newer than PATH's nats-server (2.9.10)",
    });
    expect(chooseNatsServer({ fetched, onPath: join(d, 'no-such-binary') }).binary).toBe(fetched);
    const newer = standIn(d, 'path-2.11', '2.11.1');
    expect(chooseNatsServer({ fetched, onPath: newer })).toMatchObject({ binary: newer, version: { text: '2.11.1' } });
    const same = standIn(d, 'path-2.10', '2.10.27');
    expect(chooseNatsServer({ fetched, onPath: same }).binary).toBe(same); // not newer: PATH's
    expect(chooseNatsServer({ fetched: join(d, 'not-fetched'), onPath: old })).toMatchObject({
      binary: old,
      why: "PATH's",
    });
    expect(chooseNatsServer({ fetched: standIn(d, 'broken'), onPath: old }).binary).toBe(old);
  });

  it('CORRAL_NATS_SERVER wins when set; an empty one counts as unset', () => {
    process.env.CORRAL_NATS_SERVER = '/opt/elsewhere/nats-server';
    expect(natsServerBinary()).toBe('/opt/elsewhere/nats-server');
    process.env.CORRAL_NATS_SERVER = '';
    expect(natsServerBinary()).toBe(chooseNatsServer().binary);
  });
});
