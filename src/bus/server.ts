/**
 * Start a local nats-server with JetStream as a child process (used by `corral up` and the tests).
 * Which binary: `CORRAL_NATS_SERVER`, else the Debian 13 one bootstrap.sh fetched into .corral/ when it is
 * newer than PATH's, else PATH's (nats-binary.ts; docs/decisions/0012).
 *
 * The server runs from a config file generated for the version it reports (`nats-server --version`):
 * with 2.10 and later JetStream fsyncs every write (`sync_interval: always`); 2.9.x rejects that field,
 * so it is left out and the log says which guarantee holds (nats-config.ts, docs/decisions/0005).
 * The file is `<dataDir>/nats-server.conf`; the server writes its pid to `<dataDir>/nats-server.pid` and
 * keeps its streams in `<dataDir>/jetstream`, as it did when it was started with `-sd <dataDir>`.
 * Port 0 picks a free port; the chosen one is read back from the server's own log line.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { err } from '../errors.ts';
import { natsServerBinary } from './nats-binary.ts';
import { natsServerConfig, parseNatsServerVersion, type ServerVersion } from './nats-config.ts';

export { natsServerBinary };

export interface LocalNats {
  url: string;
  port: number;
  proc: ChildProcess;
  /** The binary that runs (a path, or `nats-server` from PATH). */
  binary: string;
  /** The version `nats-server --version` reported (undefined if it printed none). */
  version: ServerVersion | undefined;
  /** Whether JetStream fsyncs every write before acknowledging it (`sync_interval: always`). */
  syncAlways: boolean;
  /** The guarantee in one line, as logged at start. */
  guarantee: string;
  /** The generated config file and the server's pid file. */
  configFile: string;
  pidFile: string;
  stop(): Promise<void>;
}

const cannotRun = (binary: string, e: Error) =>
  err.unavailable(`cannot run nats-server (${binary}): ${e.message}; run infra/scripts/bootstrap.sh`, e);

/** `nats-server --version`, parsed. */
export function natsServerVersion(timeoutMs = 10_000, binary = natsServerBinary()): Promise<ServerVersion | undefined> {
  return new Promise((res, rej) => {
    execFile(binary, ['--version'], { timeout: timeoutMs }, (e, stdout, stderr) => {
      if (e && (e as NodeJS.ErrnoException).code === 'ENOENT') return rej(cannotRun(binary, e));
      res(parseNatsServerVersion(`${stdout}\n${stderr}`));
    });
  });
}

export async function startNatsServer(opts: {
  dataDir: string;
  port?: number;
  timeoutMs?: number;
  /** Where the durability line goes. @default stderr */
  log?: (line: string) => void;
  /** Text appended to the generated config, e.g. the `authorization` block of infra/nats/gen-creds.ts. */
  extra?: string;
}): Promise<LocalNats> {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const binary = natsServerBinary();
  const version = await natsServerVersion(opts.timeoutMs, binary);
  const configFile = join(dataDir, 'nats-server.conf');
  const pidFile = join(dataDir, 'nats-server.pid');
  // nats-server: port -1 picks a free port (0 would mean 4222)
  const conf = natsServerConfig({ version, storeDir: dataDir, port: !opts.port ? -1 : opts.port, pidFile });
  writeFileSync(configFile, opts.extra ? `${conf.text}\n${opts.extra.trimEnd()}\n` : conf.text);
  const proc = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(err.timeout(`nats-server did not start: ${buf.slice(-500)}`));
    }, opts.timeoutMs ?? 10_000);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(cannotRun(binary, e));
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(err.unavailable(`nats-server exited with ${code}: ${buf.slice(-500)}`));
    });
    proc.stderr.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /Listening for client connections on ([\d.]+):(\d+)/.exec(buf);
      if (m && /Server is ready/.test(buf)) {
        clearTimeout(timer);
        resolve(`nats://127.0.0.1:${m[2]}`);
      }
    });
  });
  proc.removeAllListeners('exit');
  proc.stderr.removeAllListeners('data');
  proc.stderr.resume();
  (opts.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(conf.guarantee);
  return {
    url,
    port: Number(new URL(url).port),
    proc,
    binary,
    version,
    syncAlways: conf.syncAlways,
    guarantee: conf.guarantee,
    configFile,
    pidFile,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
        setTimeout(() => proc.kill('SIGKILL'), 3000).unref();
      }),
  };
}
