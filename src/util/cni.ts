/**
 * Invoking a CNI plugin the way containerd's CRI plugin does (CNI spec 1.0: the plugin binary with
 * CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_PATH in its environment, the network
 * configuration on stdin, the result or an error as JSON on stdout). `runIn`: the namespace the plugin
 * itself runs in (`nsenter --net=<path>`), so that a bridge plugin makes its bridge there rather than in
 * the host's root namespace. Used by `corral run --net bridge` and by the network tests.
 */
import { spawn } from 'node:child_process';
import { err } from '../errors.ts';

export const CNI_PATH = '/usr/lib/cni';

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** CNI_NETNS: the pod's namespace (a path). */
  netns: string;
  ifname: string;
  /** The network configuration (`type` names the plugin binary under `path`). */
  conf: Record<string, unknown> & { type: string; cniVersion: string; name: string };
  path?: string;
  runIn?: string;
  timeoutMs?: number;
}

/** CNI's result of an ADD (the parts Corral reads). */
export interface CniResult {
  interfaces?: { name: string; mac?: string; sandbox?: string }[];
  ips?: { address: string; gateway?: string; interface?: number }[];
  routes?: { dst: string; gw?: string }[];
}

export function cni(c: CniCall): Promise<CniResult> {
  const dir = c.path ?? CNI_PATH;
  const plugin = `${dir}/${c.conf.type}`;
  const [cmd, args] = c.runIn ? ['nsenter', [`--net=${c.runIn}`, '--', plugin]] : [plugin, []];
  const env = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: c.command,
    CNI_CONTAINERID: c.containerId,
    CNI_NETNS: c.netns,
    CNI_IFNAME: c.ifname,
    CNI_PATH: dir,
  };
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], timeout: c.timeoutMs ?? 20_000 });
    let out = '';
    let errOut = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (errOut += d.toString()));
    p.once('error', (e) => reject(err.unavailable(`CNI plugin ${plugin}: ${e.message}`, e)));
    p.once('close', (code) => {
      let parsed: Record<string, unknown> = {};
      try {
        parsed = out.trim() ? (JSON.parse(out) as Record<string, unknown>) : {};
      } catch {
        /* not JSON: reported below with the raw output */
      }
      if (code === 0) return resolve(parsed);
      const msg = typeof parsed.msg === 'string' ? parsed.msg : (out || errOut).trim();
      reject(err.internal(`CNI ${c.command} with ${plugin} failed (exit ${code}): ${msg}`));
    });
    p.stdin.end(JSON.stringify(c.conf));
  });
}
