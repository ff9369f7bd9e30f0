/**
 * A NATS cluster on this machine, as child processes: the servers of {@link natsClusterConfigs}
 * (cluster-config.ts) on free ports, each with its own store dir. {@link startNatsCluster} resolves once
 * JetStream has a meta leader (`$JS.API.INFO` answers without an error); the handle kills and restarts
 * single servers (the tests' crashes) and stops them all. `corral up --cluster 3` and the tests run it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { err } from '../errors.ts';
import { natsClusterConfigs } from './cluster-config.ts';
import { natsServerBinary, natsServerVersion } from './server.ts';

export interface ClusterMember {
  name: string;
  url: string;
  configFile: string;
  proc: ChildProcess;
}

export interface LocalNatsCluster {
  /** Every client URL, comma-separated (give it to connectNats / `--nats`). */
  url: string;
  urls: string[];
  members: ClusterMember[];
  guarantee: string;
  /** SIGKILL server i (a crash) and wait until it is gone. */
  kill(i: number): Promise<void>;
  /** Start server i again from its config and store dir (kills it first if it runs); waits until it serves. */
  restart(i: number): Promise<void>;
  /** Resolves once JetStream answers `$JS.API.INFO` without an error (a meta leader exists). */
  waitForJetStream(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const freePort = (port: number) =>
  new Promise<boolean>((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });

/** A base port with `2 * size` free ports after it (client and route ports on one machine). */
async function freeBase(size: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    let ok = true;
    for (let p = base; p < base + 2 * size && ok; p++) ok = await freePort(p);
    if (ok) return base;
  }
  throw err.unavailable(`no ${2 * size} consecutive free ports found for a NATS cluster`);
}

const gone = (p: ChildProcess) =>
  new Promise<void>((r) => {
    if (p.exitCode !== null || p.signalCode !== null) r();
    else p.once('exit', () => r());
  });

function spawnServer(configFile: string, timeoutMs: number): Promise<ChildProcess> {
  const proc = spawn(natsServerBinary(), ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise<ChildProcess>((resolveP, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(err.timeout(`nats-server (${configFile}) did not start: ${buf.slice(-500)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      proc.stderr.removeAllListeners('data');
      proc.stderr.resume();
    };
    proc.once('error', (e) => {
      done();
      reject(err.unavailable(`cannot run nats-server (${natsServerBinary()}): ${e.message}`, e));
    });
    proc.once('exit', (code) => {
      done();
      reject(err.unavailable(`nats-server (${configFile}) exited with ${code}: ${buf.slice(-500)}`));
    });
    proc.stderr.on('data', (d: Buffer) => {
      buf += d.toString();
      if (/Server is ready/.test(buf)) {
        done();
        resolveP(proc);
      }
    });
  });
}

export async function startNatsCluster(opts: {
  dataDir: string;
  /** @default 3 */
  size?: number;
  /** Client ports basePort..basePort+size-1, route ports after them; unset: a free range. */
  basePort?: number;
  timeoutMs?: number;
  /** Appended to every server's config (an `authorization` block). */
  extra?: string;
  /** With `extra` auth: the seed file of a user allowed `$JS.API.INFO`, for the readiness check. */
  readySeedFile?: string;
  log?: (line: string) => void;
}): Promise<LocalNatsCluster> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const size = opts.size ?? 3;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const version = await natsServerVersion();
  const basePort = opts.basePort ?? (await freeBase(size));
  const cfg = natsClusterConfigs({ version, dataDir, basePort, size, extra: opts.extra });
  const members: ClusterMember[] = [];
  const stopAll = () =>
    Promise.all(
      members.map(async (m) => {
        if (m.proc.exitCode !== null || m.proc.signalCode !== null) return;
        m.proc.kill('SIGTERM');
        const t = setTimeout(() => m.proc.kill('SIGKILL'), 5000);
        await gone(m.proc);
        clearTimeout(t);
      }),
    );
  try {
    // One at a time: started together, two servers' routes to each other could both close as duplicates
    // and one of them never met the JetStream meta leader, so R3 placement failed for good ("no suitable
    // peers"; seen in containers and in CI).
    for (const s of cfg.servers) {
      const configFile = join(dataDir, `${s.name}.conf`);
      writeFileSync(configFile, s.text);
      const proc = await spawnServer(configFile, timeoutMs);
      members[s.index] = { name: s.name, url: s.url, configFile, proc };
    }
  } catch (e) {
    await stopAll();
    throw e;
  }

  const connectOpts = () => {
    const seed = opts.readySeedFile ? readFileSync(opts.readySeedFile, 'utf8').trim() : undefined;
    return seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)) } : {};
  };
  async function waitForJetStream(ms = timeoutMs): Promise<void> {
    const until = Date.now() + ms;
    let nc: NatsConnection | undefined;
    let last: string;
    try {
      nc = await connect({
        servers: cfg.servers.map((s) => s.url),
        timeout: 3000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        ...connectOpts(),
      });
      for (;;) {
        try {
          const m = await nc.request('$JS.API.INFO', undefined, { timeout: 1000 });
          const r = JSON.parse(new TextDecoder().decode(m.data)) as { error?: { description?: string } };
          if (!r.error) return;
          last = r.error.description ?? JSON.stringify(r.error);
        } catch (e) {
          last = (e as Error).message;
        }
        if (Date.now() > until)
          throw err.timeout(`JetStream of the NATS cluster has no meta leader after ${ms} ms (${last})`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await nc?.close().catch(() => {
        // A probe connection: whether JetStream is up was decided above; a failed close changes nothing.
      });
    }
  }
  try {
    await waitForJetStream();
  } catch (e) {
    await stopAll();
    throw e;
  }
  (opts.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(cfg.guarantee);

  const cluster: LocalNatsCluster = {
    url: cfg.url,
    urls: cfg.servers.map((s) => s.url),
    members,
    guarantee: cfg.guarantee,
    async kill(i) {
      const m = members[i]!;
      if (m.proc.exitCode === null && m.proc.signalCode === null) m.proc.kill('SIGKILL');
      await gone(m.proc);
    },
    async restart(i) {
      await cluster.kill(i);
      members[i]!.proc = await spawnServer(members[i]!.configFile, timeoutMs);
    },
    waitForJetStream,
    stop: async () => {
      await stopAll();
    },
  };
  return cluster;
}
