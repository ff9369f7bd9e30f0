/**
 * The `corral` CLI entry point (the composition root for every process: agent, workers, client
 * commands). The only module that calls process.exit. Errors print one line: `corral: <Code>: message`.
 */
import { CorralError, ensureError } from '../errors.ts';
import type { Io } from './io.ts';
import { traced } from './tracing.ts';

export type { Io } from './io.ts';

const HELP = `corral: VM-isolated sandboxes over NATS (Kata's create semantics, XState actors)

Usage: corral <command> [flags]

Bring a node up
  up [--data-dir DIR] [--port N]     local nats-server + agent + workers; Ctrl-C stops all
  demo                                up, run examples/hello, stop (what npm start runs)
  agent [--spawn-workers]             run the node agent (systemd: see infra/systemd/)
  worker mount|hypervisor|network     run one worker process
  install [--root DIR] [--nats URL]   set this host up: the guest image, /etc/corral/configuration.toml (kept
                                      if it exists), corral.env, systemd units, the containerd shim
  uninstall [--root DIR]              remove what install added
  shim install|uninstall [--bin-dir DIR] [--nats URL] [--node NAME]
                                      containerd-shim-corral-v2 on containerd's PATH (runtime
                                      io.containerd.corral.v2), and the containerd config for it

Tasks (containerd's Task API)
  run --bundle DIR [-i] [-t] [--rootfs T:SRC[:OPTS]]... [--config PATH] [--id ID] [--rm]
                                      create + start + stream output + wait; exits with the process's code;
                                      -i feeds stdin, -t gives it a terminal (as docker run -it);
                                      --net bridge: a network on the local bridge corral0 (implies --rm)
  create ID --bundle DIR [--rootfs T:SRC[:OPTS]]... [--config PATH] [--terminal]
  start ID | state ID | wait ID | delete ID   (each takes --exec-id EID for an exec)
  pids ID
  kill ID [--exec-id EID] [--signal SIG] [--all]
  exec ID [--exec-id EID] [-i] [-t] [--user UID[:GID]] [--cwd DIR] [--env K=V]... -- CMD [ARG...]
                                      a new process in a running task; exits with its code
  pause ID | resume ID                freeze and thaw the task's processes (a sandbox's: all its containers)
  stats ID                            CPU, memory and pids of the task's cgroup in the guest
  update ID [--memory BYTES] [--cpu-quota US] [--cpu-period US] [--pids N]
                                      change the task's limits inside the guest
  ps                                  every task on the node
  top [--interval D] [--once]         per node: what runs, capacity used, the last minute's creates and
                                      failures, refreshing in place (q quits)
  pool                                the node's VM pool ([factory] vm_cache_number): classes, idle VMs

Events and replay
  events [--sandbox ID] [--node N] [--since SEQ|TIME] [--follow]
                                      recorded inputs, states and facts (TIME: ISO date or 10m ago)
  events export --sandbox ID -o FILE  one sandbox's history as JSON lines, for a bug report
  replay ID [--file FILE] [--until SEQ] [--step] [--html FILE]
                                      rebuild the sandbox's actors from its log; exits 1 naming the
                                      first step whose rebuilt state differs from the recorded one

Fleet (many nodes: docs/api.md, Fleet)
  fleet nodes                         every node: state, capacity and use, last heartbeat, version
  fleet cordon NODE | uncordon NODE   stop or resume placing new sandboxes on NODE
  fleet drain NODE [--timeout D] [--grace D] [--policy delete|recreate]
                                      cordon, then stop and delete NODE's sandboxes, with progress
  fleet controller [--policy spread|binpack] [--lost-after D]
                                      the placement service (any number of replicas, one queue group)

Global flags
  --nats URL     NATS server (env NATS_URL, default nats://127.0.0.1:4222)
  --node NAME    node to talk to (env CORRAL_NODE; default: for a task ID, the fleet node holding it,
                 else the hostname)
  --json         machine-readable output
  --timeout D    request timeout; a duration is a number with a unit (500ms, 30s, 2m, 1h, 7d)
  --creds FILE   NKEY seed file to connect with (env CORRAL_CREDS; infra/nats/gen-creds.ts)
  -h, --help     this help

Docs: README.md, docs/api.md (subjects, fields, codes, events).`;

/** A command: how it runs, and its usage line for `--help` when it has one. */
type Command = { run(argv: string[], io: Io): Promise<number>; usage?: string };

/**
 * Every named command, each module loaded only when its command runs: `corral agent` and the workers start
 * without compiling the client commands (issue 13: process start is part of recovery).
 */
const lazy =
  <M>(load: () => Promise<M>, command: (m: M) => Command) =>
  async (): Promise<Command> =>
    command(await load());
const NAMED: Record<string, () => Promise<Command>> = {
  up: lazy(
    () => import('./commands/up.ts'),
    (m) => ({ run: m.upCommand }),
  ),
  demo: lazy(
    () => import('./commands/up.ts'),
    (m) => ({ run: m.demoCommand }),
  ),
  agent: lazy(
    () => import('./commands/agent.ts'),
    (m) => ({ run: m.agentCommand }),
  ),
  worker: lazy(
    () => import('./commands/worker.ts'),
    (m) => ({ run: m.workerCommand }),
  ),
  events: lazy(
    () => import('./commands/events.ts'),
    (m) => ({ run: m.eventsCommand, usage: m.EVENTS_USAGE }),
  ),
  replay: lazy(
    () => import('./commands/replay.ts'),
    (m) => ({ run: m.replayCommand, usage: m.REPLAY_USAGE }),
  ),
  fleet: lazy(
    () => import('./commands/fleet.ts'),
    (m) => ({ run: m.fleetCommand, usage: m.FLEET_USAGE }),
  ),
  install: lazy(
    () => import('./commands/install.ts'),
    (m) => ({ run: (argv, io) => m.installCommand('install', argv, io), usage: m.INSTALL_USAGE }),
  ),
  uninstall: lazy(
    () => import('./commands/install.ts'),
    (m) => ({ run: (argv, io) => m.installCommand('uninstall', argv, io), usage: m.INSTALL_USAGE }),
  ),
  shim: lazy(
    () => import('./commands/install.ts'),
    (m) => ({ run: m.shimCommand, usage: m.SHIM_USAGE }),
  ),
  top: lazy(
    () => import('./commands/top.ts'),
    (m) => ({ run: m.topCommand, usage: m.TOP_USAGE }),
  ),
  pool: lazy(
    () => import('./commands/pool.ts'),
    (m) => ({ run: m.poolCommand, usage: m.POOL_USAGE }),
  ),
};

/** The task and process commands (run, create, exec, ...), or undefined for an unknown one. */
async function clientCommand(cmd: string): Promise<Command | undefined> {
  const [{ taskCommands }, { processCommands }] = await Promise.all([
    import('./commands/task.ts'),
    import('./commands/process.ts'),
  ]);
  const commands = { ...taskCommands, ...processCommands };
  return Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
}

export async function main(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    io.out(HELP);
    return 0;
  }
  const command = Object.hasOwn(NAMED, cmd) ? await NAMED[cmd]!() : await clientCommand(cmd);
  if (rest.includes('--help') || rest.includes('-h')) {
    const usage = command?.usage;
    io.out(
      usage ? `Usage: ${usage}\n\nGlobal flags: --nats URL, --node NAME, --json, --timeout D, --creds FILE` : HELP,
    );
    return 0;
  }
  if (command) return command.run(rest, io);
  io.err(`corral: unknown command ${JSON.stringify(cmd)}; see corral --help`);
  return 2;
}

const isEntry =
  process.argv[1] && new URL(import.meta.url).pathname === (await import('node:fs')).realpathSync(process.argv[1]);
const viaBin = process.argv[1]?.endsWith('/corral.mjs') || process.argv[1]?.endsWith('/corral');
if (isEntry || viaBin) {
  const io: Io = {
    env: process.env,
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    stdout: (b) => process.stdout.write(b),
    stderr: (b) => process.stderr.write(b),
    stdin: process.stdin,
  };
  const argv = process.argv.slice(2);
  traced(argv, () => main(argv, io)).then(
    (code) => {
      process.exitCode = code;
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e: unknown) => {
      const ce = ensureError(e);
      io.err(`corral: ${ce.code}: ${ce.message}`);
      if (!(e instanceof CorralError) && process.env.CORRAL_DEBUG) io.err(String((e as Error).stack));
      process.exitCode = ce.code === 'InvalidArgument' ? 2 : 1;
    },
  );
}
