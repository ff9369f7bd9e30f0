/**
 * A private Debian containerd (1.6) for shim tests: root, state, opt plugin, ctr's fifo dir, TMPDIR and the grpc
 * socket `<dir>/run/containerd.sock` (ttrpc: `.ttrpc` beside it) all live in a fresh temp dir; debug log in
 * `<dir>/containerd.log`. `opts.env` is merged into containerd's environment (shims inherit it) and
 * `opts.pathPrefix` is put first on its PATH (where `containerd-shim-<name>-v2` is looked up); `opts.extraToml`
 * is appended to the config (it must not repeat a table header written here). `opts.cri` loads the CRI plugin
 * (`sandboxImage`, CNI bridge `crl-<4 hex>` on a private 10.200.x.0/24, same snapshotter; `criToml`: more
 * lines in the plugin's own table), otherwise it is disabled. The snapshotter is overlayfs when an overlay
 * mount works under /tmp, else native (`CORRAL_TEST_SNAPSHOTTER` overrides).
 *
 * `ctr([...])` runs ctr against this instance (adding `--fifo-dir`, and `--runc-root <dir>/runc` to `run`; a
 * `run` given `input` gets its stdin's EOF only once the task has started, see there);
 * `kill` crashes the daemon, `restart` starts it again on the same dirs; `stop` ends it, kills this instance's
 * shims with their process trees, unmounts what is left under its dir, deletes the CNI bridge and the dir;
 * `leftovers` lists this instance's live shim processes and mounts.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { mountsUnder } from './leaks.ts';
import { waitFor } from './wait.ts';

export interface ContainerdOptions {
  env?: NodeJS.ProcessEnv;
  pathPrefix?: string[];
  extraToml?: string;
  /** Load the CRI plugin (disabled otherwise). */
  cri?: boolean;
  /** CRI `sandbox_image`. @default 'registry.k8s.io/pause:3.6' */
  sandboxImage?: string;
  /** More lines for the `[plugins."io.containerd.grpc.v1.cri"]` table (its header is written here). */
  criToml?: string;
  /** ctr's `-n`. @default 'default' */
  namespace?: string;
}
export interface CtrResult {
  code: number;
  stdout: string;
  stderr: string;
}
export interface CtrOptions {
  input?: string | Buffer;
  /** @default 30000; a ctr still running then is SIGKILLed and the call rejects. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}
export type Containerd = Awaited<ReturnType<typeof startContainerd>>;

let valued: Set<string> | undefined;
/** The container id in `ctr run [flags] IMAGE ID ...` (flags come first; `ctr run --help` names the valued ones). */
function runId(args: string[]): string | undefined {
  valued ??= new Set(
    execFileSync('ctr', ['run', '--help'], { encoding: 'utf8' })
      .split('\n')
      .flatMap((l) => /^\s+(-\S.*?)(?:\s{2,}|$)/.exec(l)?.[1]?.split(', ') ?? [])
      .filter((n) => n.includes(' '))
      .map((n) => n.split(' ')[0]!),
  );
  let i = 1;
  for (; i < args.length && args[i]!.startsWith('-'); i++) if (!args[i]!.includes('=') && valued.has(args[i]!)) i++;
  return args[i + 1];
}

let probed: 'overlayfs' | 'native' | undefined;
/**
 * overlayfs if an overlay mount works on /tmp's filesystem (not overlay-on-overlay, privileges), else native;
 * `CORRAL_TEST_SNAPSHOTTER=overlayfs|native` decides instead.
 */
export function pickSnapshotter(): 'overlayfs' | 'native' {
  const forced = process.env.CORRAL_TEST_SNAPSHOTTER;
  if (forced === 'overlayfs' || forced === 'native') return forced;
  if (probed) return probed;
  const d = mkdtempSync('/tmp/crl-ovl-');
  const [l, u, w, m] = ['l', 'u', 'w', 'm'].map((s) => join(d, s)) as [string, string, string, string];
  try {
    for (const x of [l, u, w, m]) mkdirSync(x);
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${l},upperdir=${u},workdir=${w}`, m], {
      stdio: 'ignore',
    });
    execFileSync('umount', [m]);
    probed = 'overlayfs';
  } catch {
    probed = 'native'; // the mount failed (or would not unmount: the check below refuses to remove it)
  }
  if (!mountsUnder(d).length) rmSync(d, { recursive: true, force: true });
  return probed;
}

interface Spec {
  linux?: { cgroupsPath?: string };
}
interface Proc {
  pid: number;
  ppid: number;
  cmd: string[];
  cwd: string;
}
/** Live (non-zombie) processes other than this one. */
function processes(): Proc[] {
  const out: Proc[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${p}/cwd`);
      } catch {
        /* a kernel thread or another user's: no cwd to match */
      }
      out.push({ pid: Number(p), ppid: Number(ppid), cmd, cwd });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}
const alivePid = (pid: number) =>
  existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
const quiet = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

export async function startContainerd(opts: ContainerdOptions = {}) {
  const dir = mkdtempSync('/tmp/crl-ctrd-');
  const sub = (s: string) => join(dir, s);
  const [root, state, fifoDir, runcRoot, cniDir] = [sub('root'), sub('state'), sub('fifo'), sub('runc'), sub('cni')];
  for (const d of [root, state, fifoDir, runcRoot, cniDir, sub('run'), sub('opt'), sub('tmp')]) mkdirSync(d);
  const address = sub('run/containerd.sock');
  const logPath = sub('containerd.log');
  const config = sub('config.toml');
  const namespace = opts.namespace ?? 'default';
  const snapshotter = pickSnapshotter();
  const bridge = `crl-${randomBytes(2).toString('hex')}`;
  const q = JSON.stringify; // a JSON string is a TOML basic string
  const disabled = ['aufs', 'btrfs', 'zfs', 'devmapper'].map((s) => `io.containerd.snapshotter.v1.${s}`);
  if (!opts.cri) disabled.push('io.containerd.grpc.v1.cri');
  const toml = [
    'version = 2',
    `root = ${q(root)}`,
    `state = ${q(state)}`,
    `disabled_plugins = ${q(disabled)}`,
    `[grpc]\n  address = ${q(address)}`,
    '[debug]\n  level = "debug"',
    `[plugins."io.containerd.internal.v1.opt"]\n  path = ${q(sub('opt'))}`,
  ];
  if (opts.cri) {
    const cri = '[plugins."io.containerd.grpc.v1.cri"';
    toml.push(
      `${cri}]\n  sandbox_image = ${q(opts.sandboxImage ?? 'registry.k8s.io/pause:3.6')}` +
        (opts.criToml ? `\n${opts.criToml}` : ''),
      `${cri}.cni]\n  bin_dir = "/usr/lib/cni"\n  conf_dir = ${q(cniDir)}`,
      `${cri}.containerd]\n  snapshotter = ${q(snapshotter)}`,
    );
    const plugins = [
      {
        type: 'bridge',
        bridge,
        isGateway: false,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: `10.200.${randomInt(256)}.0/24` }]],
          routes: [],
          dataDir: sub('cni-ipam'),
        },
      },
      { type: 'loopback' },
    ];
    writeFileSync(join(cniDir, '10-crl.conflist'), q({ cniVersion: '0.4.0', name: bridge, plugins }, null, 2));
  }
  if (opts.extraToml) toml.push(opts.extraToml);
  writeFileSync(config, toml.join('\n') + '\n');
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: sub('tmp'), ...opts.env };
  env.PATH = [...(opts.pathPrefix ?? []), env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');

  function ctr(args: string[], o: CtrOptions = {}): Promise<CtrResult> {
    const [a, b] = args;
    const full =
      a === 'run'
        ? ['run', '--fifo-dir', fifoDir, '--runc-root', runcRoot, ...args.slice(1)]
        : ['t', 'task', 'tasks'].includes(a ?? '') && ['start', 'exec', 'attach'].includes(b ?? '')
          ? [a!, b!, '--fifo-dir', fifoDir, ...args.slice(2)]
          : args;
    const timeoutMs = o.timeoutMs ?? 30_000;
    return new Promise((res, rej) => {
      const p = spawn('ctr', ['--address', address, '-n', namespace, ...full], {
        env: { ...process.env, CONTAINERD_SNAPSHOTTER: snapshotter, ...o.env },
      });
      let stdout = '',
        stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        p.kill('SIGKILL');
        rej(new Error(`ctr ${args.join(' ')}: no exit in ${timeoutMs} ms; stdout ${stdout}; stderr ${stderr}`));
      }, timeoutMs);
      p.on('error', rej);
      p.on('close', (code, sig) => {
        clearTimeout(timer);
        res({ code: code ?? 128 + (sig ? constants.signals[sig] : 0), stdout, stderr });
      });
      p.stdin.on('error', () => {}); // ctr may exit before reading its stdin
      const id = a === 'run' && o.input !== undefined ? runId(args) : undefined;
      if (id === undefined) {
        p.stdin.end(o.input);
        return;
      }
      // ctr sends CloseIO at its stdin's EOF only once NewTask has returned (tasks.NewTask sets the closer after
      // it): an earlier EOF is lost and the task's stdin never closes. Hold the EOF until the task has started.
      p.stdin.write(o.input!);
      const started = new RegExp(`^${id.replace(/[.]/g, '\\.')}\\s+\\d+\\s+(RUNNING|STOPPED|PAUSED)`, 'm');
      const poll = async () =>
        p.exitCode !== null || p.signalCode !== null || started.test((await ctr(['task', 'ls'])).stdout);
      void waitFor(poll, { timeoutMs, intervalMs: 20, ignoreErrors: true, what: `task ${id} started` })
        .catch(() => undefined) // a task that never starts: EOF now, ctr's own error tells why
        .finally(() => p.stdin.end());
    });
  }

  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const running = () => proc !== undefined && proc.exitCode === null && proc.signalCode === null;
  const log = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  async function launch() {
    const fd = openSync(logPath, 'a');
    const p = spawn('containerd', ['--config', config], { cwd: dir, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    proc = p;
    exited = new Promise((r) => p.once('exit', () => r()));
    try {
      await waitFor(async () => !running() || (await ctr(['version'], { timeoutMs: 5000 })).code === 0, {
        timeoutMs: 15_000,
        intervalMs: 20,
        what: `containerd in ${dir} to answer ctr version`,
      });
    } catch (e) {
      await halt('SIGKILL');
      throw new Error(`${String(e)}\n${log().slice(-3000)}`, { cause: e });
    }
    if (!running())
      throw new Error(`containerd exited at start (${p.exitCode ?? p.signalCode}):\n${log().slice(-3000)}`);
  }
  async function halt(signal: NodeJS.Signals) {
    if (!running()) return;
    proc!.kill(signal);
    await exited;
  }
  function leftovers() {
    const shims = processes().filter(
      (p) =>
        p.pid !== proc?.pid &&
        ((p.cmd.some((c) => c.includes('containerd-shim')) && p.cmd.includes(address)) || p.cwd.startsWith(dir + '/')),
    );
    return { shims: shims.map((p) => p.pid), mounts: mountsUnder(dir), procs: shims };
  }

  try {
    await launch();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true }); // nothing ran in it: no shim, no mount
    throw e;
  }
  let stopped = false;
  return {
    dir,
    address,
    ttrpcAddress: `${address}.ttrpc`,
    criAddress: opts.cri ? address : undefined,
    root,
    state,
    fifoDir,
    snapshotter,
    namespace,
    bridge: opts.cri ? bridge : undefined,
    get pid() {
      return proc!.pid!;
    },
    log,
    ctr,
    async importImage(archive: string) {
      const r = await ctr(['images', 'import', '--snapshotter', snapshotter, archive], { timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`ctr images import ${archive}: ${r.code} ${r.stderr}`);
      return r;
    },
    /** Signals the daemon (default SIGKILL: a crash, its shims stay) and waits for it to exit. */
    kill: (signal: NodeJS.Signals = 'SIGKILL') => halt(signal),
    /** Starts containerd again on the same dirs and config (stopping it first if it runs); waits until ready. */
    async restart() {
      await halt('SIGTERM');
      await launch();
    },
    leftovers: () => {
      const { shims, mounts } = leftovers();
      return { shims, mounts };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const term = halt('SIGTERM');
      const late = setTimeout(() => proc?.kill('SIGKILL'), 10_000);
      await term;
      clearTimeout(late);
      const { procs } = leftovers();
      const all = processes();
      const tree = new Set(procs.map((p) => p.pid));
      for (let grew = true; grew;) {
        grew = false;
        for (const p of all)
          if (tree.has(p.ppid) && !tree.has(p.pid)) {
            tree.add(p.pid);
            grew = true;
          }
      }
      for (const pid of tree) quiet('kill', ['-KILL', String(pid)]);
      await waitFor(() => [...tree].every((pid) => !alivePid(pid)), { timeoutMs: 5000, what: 'killed shims to exit' });
      for (const p of procs) {
        // a killed runc shim leaves its socket /run/containerd/s/sha256(<address>/<ns>/<id>) (shim/util_unix.go)
        const arg = (f: string) => p.cmd[p.cmd.indexOf(f) + 1];
        const hash = createHash('sha256')
          .update(`${address}/${arg('-namespace')}/${arg('-id')}`)
          .digest('hex');
        if (p.cmd.includes('-id') && existsSync(`/run/containerd/s/${hash}`)) unlinkSync(`/run/containerd/s/${hash}`);
      }
      // a runc container whose shim was killed keeps its (now empty) cgroups: linux.cgroupsPath of a bundle left
      const bundles = join(state, 'io.containerd.runtime.v2.task');
      for (const ns of existsSync(bundles) ? readdirSync(bundles) : [])
        for (const id of readdirSync(join(bundles, ns))) {
          const spec = join(bundles, ns, id, 'config.json');
          const cg = existsSync(spec) ? (JSON.parse(readFileSync(spec, 'utf8')) as Spec).linux?.cgroupsPath : undefined;
          if (cg?.startsWith('/'))
            for (const ctl of readdirSync('/sys/fs/cgroup')) quiet('rmdir', [`/sys/fs/cgroup/${ctl}${cg}`]);
        }
      for (let pass = 0; pass < 3 && mountsUnder(dir).length; pass++) {
        const deepestFirst = mountsUnder(dir).sort((x, y) => y.split('/').length - x.split('/').length);
        for (const m of deepestFirst) if (!quiet('umount', [m])) quiet('umount', ['-l', m]);
      }
      if (existsSync(`/sys/class/net/${bridge}`)) quiet('ip', ['link', 'del', bridge]);
      const still = mountsUnder(dir);
      if (still.length) throw new Error(`still mounted, ${dir} kept: ${still.join(' ')}`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
