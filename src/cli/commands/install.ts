/**
 * `corral install` / `uninstall` set a host up for Corral and take it down again; `corral shim install` /
 * `shim uninstall` do the containerd shim alone. What install adds is listed in a manifest
 * (`/var/lib/corral/installed.json`, each path with its sha256), and uninstall removes exactly that, unless
 * the file changed since (then it is kept and said so). A configuration.toml or corral.env that exists is
 * never overwritten, whoever wrote it. `--root DIR` puts everything under DIR
 * (a staging root, or a test's), paths inside the written files included.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { err } from '../../errors.ts';
import { CHECKOUT as REPO } from '../../util/checkout.ts';
import { launcherScript, RUNTIME_TYPE, SHIM_BINARY } from '../../shim/launcher.ts';
import { parse, type Parsed } from '../args.ts';
import type { Io } from '../io.ts';
import { show } from './task.ts';
import { localRuntimeConfig } from './up.ts';

const GUEST_FILES = ['vmlinux', 'initramfs.cpio.gz', 'manifest.json'];
const UNITS = ['corral-agent.service', 'corral-worker@.service'];
/** containerd's task bundles, and the CRI files (hosts, resolv.conf, hostname) its pods bind in. */
const CONTAINERD_BUNDLES = '/run/containerd:/var/lib/containerd/io.containerd.grpc.v1.cri';
const SETTINGS = '[--root DIR] [--bin-dir DIR] [--nats URL] [--node NAME] [--creds FILE]';
export const INSTALL_USAGE = `corral install ${SETTINGS} | corral uninstall [--root DIR]`;
export const SHIM_USAGE = `corral shim install ${SETTINGS} | corral shim uninstall [--root DIR]`;

/** What containerd's config needs for the `corral` runtime (ctr: `--runtime io.containerd.corral.v2`). */
export const CONTAINERD_SNIPPET = [
  '# /etc/containerd/config.toml (version = 2): a CRI runtime handler `corral`',
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.corral]',
  `  runtime_type = "${RUNTIME_TYPE}"`,
  '  pod_annotations = ["io.katacontainers.*"]',
].join('\n');

interface Item {
  path: string;
  content?: string;
  copyFrom?: string;
  mode?: number;
  /** A user's file once it exists: never overwritten, never removed. */
  keep?: boolean;
}

const OPTS = { root: { type: 'string' }, 'bin-dir': { type: 'string' } } as const;

function shimItem(p: Parsed, root: string): Item {
  const env: Record<string, string> = {};
  if (typeof p.values.nats === 'string') env.CORRAL_NATS_URL = p.values.nats;
  if (typeof p.values.node === 'string') env.CORRAL_NODE = p.values.node;
  if (typeof p.values.creds === 'string') env.CORRAL_CREDS = p.values.creds;
  const bin = join(root, (p.values['bin-dir'] as string | undefined) ?? '/usr/local/bin');
  return { path: join(bin, SHIM_BINARY), content: launcherScript({ env }), mode: 0o755 };
}

function hostItems(p: Parsed, root: string): Item[] {
  const built = join(REPO, '.corral/guest');
  const missing = GUEST_FILES.filter((f) => !existsSync(join(built, f)));
  if (missing.length)
    throw err.precondition(
      `no guest image in ${built} (${missing.join(', ')}): run \`bash infra/scripts/bootstrap.sh\``,
    );
  const guest = join(root, '/usr/share/corral/guest');
  const nats = typeof p.values.nats === 'string' ? p.values.nats : 'nats://127.0.0.1:4222';
  const unit = (u: string) => readFileSync(join(REPO, 'infra/systemd', u), 'utf8').replaceAll('/opt/corral', REPO);
  return [
    ...GUEST_FILES.map((f) => ({ path: join(guest, f), copyFrom: join(built, f) })),
    { path: join(root, '/etc/corral/configuration.toml'), content: localRuntimeConfig(guest), keep: true },
    {
      path: join(root, '/etc/corral/corral.env'),
      content: `NATS_URL=${nats}\nCORRAL_BUNDLE_ROOTS=${CONTAINERD_BUNDLES}\n`,
      keep: true,
    },
    ...UNITS.map((u) => ({ path: join(root, '/etc/systemd/system', u), content: unit(u) })),
    shimItem(p, root),
  ];
}

const manifestOf = (root: string) => join(root, '/var/lib/corral/installed.json');
type Manifest = Record<string, string>; // path → sha256 of what install wrote
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const readManifest = (root: string): Manifest =>
  existsSync(manifestOf(root)) ? (JSON.parse(readFileSync(manifestOf(root), 'utf8')) as Manifest) : {};
function writeManifest(root: string, m: Manifest) {
  mkdirSync(dirname(manifestOf(root)), { recursive: true });
  if (Object.keys(m).length) writeFileSync(manifestOf(root), JSON.stringify(m, null, 2) + '\n');
  else rmSync(manifestOf(root), { force: true });
}

function apply(items: Item[], root: string) {
  const m = readManifest(root);
  const installed: string[] = [];
  const kept: string[] = [];
  for (const it of items) {
    if (it.keep && existsSync(it.path)) {
      kept.push(it.path);
      continue;
    }
    mkdirSync(dirname(it.path), { recursive: true });
    if (it.copyFrom) copyFileSync(it.copyFrom, it.path);
    else writeFileSync(it.path, it.content ?? '', { mode: it.mode ?? 0o644 });
    m[it.path] = sha(it.path);
    installed.push(it.path);
  }
  writeManifest(root, m);
  return { installed, kept };
}

function remove(root: string, only: (path: string) => boolean = () => true) {
  const m = readManifest(root);
  const removed: string[] = [];
  const kept: string[] = [];
  for (const [f, hash] of Object.entries(m)) {
    if (!only(f)) continue;
    if (existsSync(f) && sha(f) !== hash) kept.push(f);
    else {
      rmSync(f, { force: true });
      removed.push(f);
    }
    delete m[f];
  }
  writeManifest(root, m);
  return { removed, kept };
}

const removal = (r: { removed: string[]; kept: string[] }, none: string) =>
  [...r.removed.map((f) => `removed ${f}`), ...r.kept.map((f) => `kept ${f} (changed since it was installed)`)].join(
    '\n',
  ) || none;

function report(io: Io, p: Parsed, r: { installed: string[]; kept: string[] }, next: string) {
  show(io, p, { ...r, containerdConfig: CONTAINERD_SNIPPET }, () =>
    [
      ...r.installed.map((f) => `installed ${f}`),
      ...r.kept.map((f) => `kept ${f} (it exists; not overwritten)`),
      '',
      next,
      CONTAINERD_SNIPPET,
    ].join('\n'),
  );
}

export async function installCommand(verb: 'install' | 'uninstall', argv: string[], io: Io): Promise<number> {
  const p = parse(argv, OPTS);
  const root = (p.values.root as string | undefined) ?? '/';
  if (verb === 'uninstall') {
    const r = remove(root);
    show(io, p, r, () => removal(r, 'nothing installed'));
    return 0;
  }
  report(
    io,
    p,
    apply(hostItems(p, root), root),
    'Then: systemctl daemon-reload && systemctl enable --now corral-agent; for containerd:',
  );
  return 0;
}

export async function shimCommand(argv: string[], io: Io): Promise<number> {
  const [verb, ...rest] = argv;
  const p = parse(rest, OPTS);
  const root = (p.values.root as string | undefined) ?? '/';
  if (verb === 'install') {
    report(io, p, apply([shimItem(p, root)], root), `ctr run --runtime ${RUNTIME_TYPE} ...; for CRI:`);
    return 0;
  }
  if (verb === 'uninstall') {
    const r = remove(root, (f) => f.endsWith(`/${SHIM_BINARY}`));
    show(io, p, r, () => removal(r, 'no shim installed'));
    return 0;
  }
  throw err.invalid(`usage: ${SHIM_USAGE}`);
}
