/** `corral worker mount|hypervisor|network`: one worker process (the agent spawns these, or systemd units do). */
import { connectNats } from '../../bus/connection.ts';
import { err } from '../../errors.ts';
import { rootLogger } from '../../log.ts';
import { startMountWorker } from '../../workers/mount/main.ts';
import { startHypervisorWorker } from '../../workers/hypervisor/main.ts';
import { startNetworkWorker } from '../../workers/network/main.ts';
import { Faults, faultsEnabled } from '../../workers/faults.ts';
import { checkRunDir, type Settings } from '../../agent/settings.ts';
import type { WorkerKind } from '../../domain/ops.ts';
import { claimWorkerPidfile } from '../../workers/pidfile.ts';
import { settingsFrom } from './agent.ts';
import type { Io } from '../io.ts';

export async function workerCommand(argv: string[], io: Io): Promise<number> {
  const { p, settings } = settingsFrom(argv, io);
  const kind = p.positionals[0];
  if (kind !== 'mount' && kind !== 'hypervisor' && kind !== 'network')
    throw err.invalid(`worker kind must be mount, hypervisor or network, got ${JSON.stringify(kind ?? '')}`);
  checkRunDir(settings.runDir);
  const release = claimWorkerPidfile(settings.runDir, kind); // one worker of a kind per run dir
  try {
    return await serve(kind, settings, io);
  } finally {
    release();
  }
}

async function serve(kind: WorkerKind, settings: Settings, io: Io): Promise<number> {
  const log = rootLogger({ name: `corral-worker-${kind}`, level: settings.logLevel });
  const nc = await connectNats(settings.natsUrl, `corral-${kind}-${settings.node}`, {
    nkeySeedFile: settings.credsFile,
    noAsyncTraces: true,
  });
  const faults = faultsEnabled(io.env) ? new Faults() : undefined;
  const journalPath = `${settings.dataDir}/journal/${kind}.jsonl`;
  const w =
    kind === 'network'
      ? startNetworkWorker({ nc, node: settings.node, journalPath, log, wrap: faults && ((h) => faults.wrap(h)) })
      : kind === 'mount'
        ? await startMountWorker({
            nc,
            node: settings.node,
            roots: [settings.runDir, ...settings.bundleRoots],
            journalPath,
            log,
            wrap: faults && ((h) => faults.wrap(h)),
          })
        : await startHypervisorWorker({
            nc,
            node: settings.node,
            runDir: settings.runDir,
            journalPath,
            log,
            wrap: faults && ((h) => faults.wrap(h)),
            simulate: io.env.CORRAL_SIMULATE_VMS === '1',
          });
  log.info(
    { node: settings.node, faults: !!faults, simulated: kind === 'hypervisor' && io.env.CORRAL_SIMULATE_VMS === '1' },
    `${kind} worker ready`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await w.stop(20_000);
  await nc.drain().catch((e: unknown) => log.warn({ err: e }, 'NATS connection did not drain'));
  return 0;
}
