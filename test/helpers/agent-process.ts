/**
 * `corral agent --spawn-workers --teardown-on-exit` as its own process, from src/ through tsx, with simulated
 * VMs: for tests that start, kill and restart agents themselves (no `corral up` around them).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { processesMatching, unmountUnder } from './leaks.ts';
import { REPO } from './node.ts';

/** A data dir for agents of a test (`bundles/`, and `configuration.toml` for simulated VMs). */
export function agentDir(prefix: string): { dir: string; conf: string } {
  const dir = mkdtempSync(`/tmp/corral-${prefix}-`);
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'bundles'));
  const conf = join(dir, 'configuration.toml');
  writeFileSync(conf, localRuntimeConfig(join(REPO, '.corral/guest')));
  return { dir, conf };
}

/**
 * The end of an agentDir: kills any agent or worker still running from it (only after a failure; a stopped one
 * is continued so that it dies), undoes the mounts left under it, removes it, and returns those mounts.
 */
export function removeAgentDir(dir: string): string[] {
  for (const pid of processesMatching(`--data-dir ${dir}`)) {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGKILL');
  }
  const mounts = unmountUnder(dir);
  rmSync(dir, { recursive: true, force: true });
  return mounts;
}

export interface AgentProcessOptions {
  node: string;
  nats: string;
  /** Its data dir: run dir `<dir>/run`, bundle root `<dir>/bundles`. */
  dir: string;
  /** The runtime configuration (CORRAL_CONF_FILE). */
  conf: string;
  /** More agent flags (`--creds F`, `--replicas 3`, ...). */
  args?: string[];
  stdio?: StdioOptions;
  logLevel?: string;
}

export function spawnAgent(o: AgentProcessOptions): ChildProcess {
  const flags = ['--node', o.node, '--nats', o.nats, '--data-dir', o.dir, '--run-dir', join(o.dir, 'run')];
  return spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO, 'src/cli/main.ts'),
      'agent',
      '--spawn-workers',
      '--teardown-on-exit',
      ...flags,
      '--bundle-root',
      join(o.dir, 'bundles'),
      ...(o.args ?? []),
    ],
    {
      stdio: o.stdio ?? ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        CORRAL_SIMULATE_VMS: '1',
        CORRAL_CONF_FILE: o.conf,
        CORRAL_LOG_LEVEL: o.logLevel ?? process.env.CORRAL_LOG_LEVEL ?? 'error',
      },
    },
  );
}
