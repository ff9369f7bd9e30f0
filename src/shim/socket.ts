/**
 * Where a shim listens, and which shim a task goes to. The socket is named as containerd's own shims name
 * theirs: sha256 of containerd's address, the namespace and the group, under `<dir of TTRPC_ADDRESS>/s`
 * (`/run/containerd/s` by default), since bundle paths are too long for a unix socket. The group is the
 * pod: a pod container (config.json `io.kubernetes.cri.container-type: container`) goes to its sandbox's
 * shim, as Kata groups them (one shim per pod); anything else is its own group.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';

const SANDBOX_ID_KEYS = ['io.kubernetes.cri.sandbox-id', 'io.kubernetes.cri-o.SandboxID', 'io.kubernetes.sandbox.id'];
const TYPE_KEYS = [
  'io.kubernetes.cri.container-type',
  'io.kubernetes.cri-o.ContainerType',
  'io.kubernetes.docker.type',
];

/** The id of the shim group a task of `bundle` belongs to. */
export function groupOf(bundle: string, id: string): string {
  let annotations: Record<string, string> = {};
  try {
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      annotations?: Record<string, string>;
    };
    annotations = spec.annotations ?? {};
  } catch {
    return id; // no readable config.json: the agent's create reports that, not the shim's start
  }
  const type = TYPE_KEYS.map((k) => annotations[k]).find((v) => v !== undefined);
  const sandbox = SANDBOX_ID_KEYS.map((k) => annotations[k]).find((v) => v !== undefined);
  return type === 'container' && sandbox ? sandbox : id;
}

export function socketPath(containerdAddress: string, namespace: string, group: string, ttrpcAddress = ''): string {
  const dir = ttrpcAddress ? join(dirname(ttrpcAddress), 's') : '/run/containerd/s';
  const h = createHash('sha256').update(`${containerdAddress}/${namespace}/${group}`).digest('hex');
  return join(dir, h);
}

/** Whether something accepts connections on `path` (a live shim), within `ms`. */
export function accepting(path: string, ms = 1000): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(path);
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      res(ok);
    };
    const t = setTimeout(() => done(false), ms);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
