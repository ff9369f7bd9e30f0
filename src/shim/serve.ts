/**
 * The shim daemon: the ttrpc Task service on `-socket`, translated to the agent over NATS. Logs go to
 * containerd's `log` FIFO in the bundle (containerd copies them into its own log). Readiness, or the
 * reason for failing, goes to fd 3 (start.ts waits on it). It exits on Shutdown once it serves no task,
 * and on SIGTERM; the agent keeps every task either way. Traced as `corral-shim` when the OTLP endpoint
 * is set (trace.ts).
 */
import { closeSync, constants, openSync, rmSync, writeSync } from 'node:fs';
import { connectNats } from '../bus/connection.ts';
import { ensureError } from '../errors.ts';
import { rootLogger, type Logger } from '../log.ts';
import { agentClient } from './agent.ts';
import type { ShimConfig } from './config.ts';
import { EventForwarder } from './events.ts';
import type { ShimFlags } from './flags.ts';
import { Task } from './gen/shim_pb.ts';
import { ShimTasks } from './tasks.ts';
import { taskService } from './task-service.ts';
import { TtrpcServer } from './ttrpc/server.ts';
import { bindService } from './ttrpc/service.ts';
import { startTracing, stopTracing } from '../util/trace.ts';
import { tracedService } from './trace.ts';

function logFifo(): number | undefined {
  try {
    return openSync('log', constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return undefined; // no reader (containerd gone) or no FIFO: log nowhere rather than fail
  }
}

function tell(line: string) {
  try {
    writeSync(3, `${line}\n`);
    closeSync(3);
  } catch {
    // fd 3 is start's readiness pipe; run by hand it may not exist
  }
}

export async function shimServe(f: ShimFlags, cfg: ShimConfig): Promise<void> {
  await startTracing('corral-shim');
  const fd = logFifo();
  const log: Logger = rootLogger({
    name: 'corral-shim',
    level: f.debug ? 'debug' : undefined,
    destination: fd ?? openSync('/dev/null', 'w'),
  });
  try {
    const nc = await connectNats(
      cfg.natsUrl,
      `corral-shim ${f.namespace}/${f.id}`,
      cfg.creds ? { nkeySeedFile: cfg.creds } : {},
    );
    const agent = agentClient(nc, cfg.node);
    const events = new EventForwarder(cfg.ttrpcAddress, f.namespace, log);
    const tasks = new ShimTasks(nc, agent, (e) => events.emit(e), log);
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'shim stopping');
      await server.close();
      tasks.close();
      await events.drain();
      events.close();
      await nc.drain().catch(() => undefined);
      rmSync(f.socket, { force: true });
      await stopTracing();
      process.exit(0);
    };
    const server = new TtrpcServer(
      [
        tracedService(
          bindService(
            Task,
            taskService(tasks, agent, () => void stop('shutdown')),
          ),
        ),
      ],
      {
        onError: (e) => log.warn({ err: e }, 'ttrpc connection failed'),
      },
    );
    await server.listen(f.socket);
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
    log.info({ socket: f.socket, node: cfg.node, nats: cfg.natsUrl }, 'shim ready');
    tell('ready');
  } catch (e) {
    const ce = ensureError(e);
    log.error({ err: ce }, 'shim failed to start');
    tell(`error: ${ce.code}: ${ce.message}`);
    await stopTracing();
    process.exit(1);
  }
}
