/**
 * `corral agent --spawn-workers --teardown-on-exit` as its own process, from src/ through tsx, with simulated
 * VMs: for tests that start, kill and restart agents themselves (no `corral up` around them).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './node.ts';

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
