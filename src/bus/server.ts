/**
 * Start a local nats-server with JetStream as a child process (used by `corral up` and the tests).
 * Port 0 picks a free port; the chosen one is read back from the server's own log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { err } from '../errors.ts';

export interface LocalNats {
  url: string;
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export function natsServerBinary(): string {
  return process.env.CORRAL_NATS_SERVER ?? 'nats-server';
}

export async function startNatsServer(opts: { dataDir: string; port?: number; timeoutMs?: number }): Promise<LocalNats> {
  mkdirSync(opts.dataDir, { recursive: true });
  const port = !opts.port ? -1 : opts.port; // nats-server: -1 picks a free port (0 would mean 4222)
  const proc = spawn(natsServerBinary(), ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', opts.dataDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(err.timeout(`nats-server did not start: ${buf.slice(-500)}`)); }, opts.timeoutMs ?? 10_000);
    proc.once('error', (e) => { clearTimeout(timer); reject(err.unavailable(`cannot run nats-server (${natsServerBinary()}): ${e.message}; run infra/scripts/bootstrap.sh`, e)); });
    proc.once('exit', (code) => { clearTimeout(timer); reject(err.unavailable(`nats-server exited with ${code}: ${buf.slice(-500)}`)); });
    proc.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /Listening for client connections on ([\d.]+):(\d+)/.exec(buf);
      if (m && /Server is ready/.test(buf)) { clearTimeout(timer); resolve(`nats://127.0.0.1:${m[2]}`); }
    });
  });
  proc.removeAllListeners('exit');
  proc.stderr!.resume();
  return {
    url,
    port: Number(new URL(url).port),
    proc,
    stop: () => new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
      setTimeout(() => proc.kill('SIGKILL'), 3000).unref();
    }),
  };
}
