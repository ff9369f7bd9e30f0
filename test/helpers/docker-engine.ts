/**
 * A Docker engine of the test's own (machine-notes "Docker and testcontainers"): Debian's dockerd, started
 * by hand with its data, exec root and socket under one /tmp dir, so that nothing of it outlives the test.
 * It touches none of the host's networking: no iptables rules (`--iptables=false`), no IP forwarding, no
 * masquerading, no default bridge; the tests' networks are `Internal` (no route out). testcontainers is
 * pointed at its socket (DOCKER_HOST) with the reaper off (its image cannot be pulled here).
 *
 * {@link startDockerEngine} answers `{ skip }` with a reason only when no engine can start (dockerd not
 * installed, or it does not come up); under CI it throws instead, so a gap never passes as a skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './wait.ts';
import { mountsUnder } from './leaks.ts';

export interface DockerEngine {
  socket: string;
  dir: string;
  /** Stop dockerd (and the containerd it started), then remove its dirs; throws if a mount stays. */
  stop(): Promise<void>;
}

const docker = (socket: string, args: string[]) =>
  spawnSync('docker', ['-H', `unix://${socket}`, ...args], { encoding: 'utf8', timeout: 30_000 });

export async function startDockerEngine(): Promise<DockerEngine | { skip: string }> {
  const missing = ['dockerd', 'docker', 'nsenter', 'iptables'].filter(
    (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0,
  );
  const refuse = (why: string) => {
    if (process.env.CI) throw new Error(`no Docker engine under CI: ${why} (bootstrap installs docker.io)`);
    return { skip: why };
  };
  if (missing.length) return refuse(`not installed: ${missing.join(', ')} (npm test's bootstrap installs docker.io)`);
  const dir = mkdtempSync('/tmp/corral-docker-');
  const socket = join(dir, 'docker.sock');
  const p: ChildProcess = spawn(
    'dockerd',
    [
      ...['--data-root', join(dir, 'root'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'pid')],
      ...['--host', `unix://${socket}`, '--bridge=none', '--iptables=false', '--ip-forward=false', '--ip-masq=false'],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: false },
  );
  let log = '';
  p.stderr!.on('data', (b: Buffer) => (log = (log + b.toString()).slice(-20_000)));
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const stop = async () => {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await exited;
    }
    const left = mountsUnder(dir);
    if (left.length) throw new Error(`dockerd left mounts: ${left.join(', ')}`);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(() => p.exitCode === null && existsSync(socket) && docker(socket, ['version']).status === 0, {
      until: (ok) => ok || p.exitCode !== null,
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'dockerd to answer on its socket',
    });
    if (p.exitCode !== null) throw new Error(`dockerd exited ${p.exitCode}`);
  } catch (e) {
    await stop().catch(() => {});
    return refuse(`dockerd did not start: ${(e as Error).message}\n${log.split('\n').slice(-8).join('\n')}`);
  }
  process.env.DOCKER_HOST = `unix://${socket}`;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE = 'localhost';
  return { socket, dir, stop };
}

/** The pid of a running container's first process (for nsenter into its network namespace). */
export function containerPid(socket: string, id: string): number {
  const r = docker(socket, ['inspect', '-f', '{{.State.Pid}}', id]);
  const pid = Number(r.stdout.trim());
  if (r.status !== 0 || !(pid > 0)) throw new Error(`docker inspect ${id}: ${r.stderr || r.stdout}`);
  return pid;
}

/** Run `docker` against the engine; throws with its stderr on failure. */
export function dockerCli(socket: string, args: string[]): string {
  const r = docker(socket, args);
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')}: ${r.stderr.trim() || r.error?.message}`);
  return r.stdout;
}
