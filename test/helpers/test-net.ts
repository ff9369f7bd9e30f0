/**
 * A network a test builds for itself, the way containerd's CRI plugin builds a pod's (Debian's CNI plugins:
 * bridge + host-local + loopback, CNI_COMMAND=ADD/DEL with the pod's namespace): a "hosts" namespace holds
 * the bridge (the bridge plugin runs inside it, so nothing lands in the host's root namespace) and its
 * gateway address; each pod namespace gets a veth on it. The subnet is private to the bridge; routes
 * point at the gateway in the hosts namespace only, which has no other interface: no NAT, no masquerade,
 * nothing can leave for outside addresses. `down()` removes everything, also after a failure half way.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cni } from '../../src/util/cni.ts';
import { waitFor } from './wait.ts';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

export interface Pod {
  name: string;
  netns: string;
  /** The address CNI assigned (without its prefix length). */
  address: string;
  cidr: string;
}

export class TestNet {
  readonly prefix: string;
  readonly hosts: string;
  readonly pods: Pod[] = [];
  private made: string[] = [];
  private servers: ChildProcess[] = [];
  private dir = mkdtempSync('/tmp/corral-net-');

  /** `subnet`: a /24 of the form `a.b.c.0/24`; the gateway (in the hosts namespace) is `.1`. */
  constructor(
    tag: string,
    readonly subnet = '10.231.7.0/24',
  ) {
    this.prefix = `ct${process.pid}${tag}`;
    this.hosts = this.add('hosts');
    ip('-n', `${this.prefix}-hosts`, 'link', 'set', 'lo', 'up');
  }

  get gateway(): string {
    return this.subnet.replace(/0\/24$/, '1');
  }

  private add(name: string): string {
    const full = `${this.prefix}-${name}`;
    ip('netns', 'add', full);
    this.made.push(full);
    return `/run/netns/${full}`;
  }

  private conf(type: 'bridge' | 'loopback') {
    if (type === 'loopback') return { cniVersion: '1.0.0', name: 'lo', type };
    return {
      cniVersion: '1.0.0',
      name: this.prefix,
      type,
      bridge: 'br0',
      isGateway: true,
      ipMasq: false,
      ipam: {
        type: 'host-local',
        dataDir: join(this.dir, 'ipam'),
        ranges: [[{ subnet: this.subnet, gateway: this.gateway }]],
        // A route to a prefix nobody uses, via the gateway: it shows that routes reach the guest.
        routes: [{ dst: '10.99.0.0/16' }],
      },
    };
  }

  /** A pod namespace with lo up and eth0 on the bridge, as containerd's CRI plugin would make it. */
  async pod(name: string): Promise<Pod> {
    const netns = this.add(name);
    const call = { containerId: `${this.prefix}-${name}`, netns, ifname: 'eth0' } as const;
    await cni({ ...call, command: 'ADD', ifname: 'lo', conf: this.conf('loopback') });
    const r = await cni({ ...call, command: 'ADD', conf: this.conf('bridge'), runIn: this.hosts });
    const cidr = r.ips?.[0]?.address ?? '';
    const pod = { name, netns, cidr, address: cidr.split('/')[0] ?? '' };
    this.pods.push(pod);
    return pod;
  }

  /** busybox httpd in `pod`'s namespace serving `body` at `/`, on port 8080; resolves once it answers. */
  async httpServer(pod: Pod, body: string): Promise<string> {
    const www = join(this.dir, `www-${pod.name}`);
    mkdirSync(www);
    writeFileSync(join(www, 'index.html'), body);
    const p = spawn('nsenter', [`--net=${pod.netns}`, '--', 'busybox', 'httpd', '-f', '-p', '8080', '-h', www], {
      stdio: 'ignore',
    });
    this.servers.push(p);
    await waitFor(() => this.fetchFrom(pod, pod.address, 8080), {
      until: (t) => t.includes(body),
      timeoutMs: 10_000,
      intervalMs: 50,
      what: `httpd in ${pod.name}`,
    });
    return `${pod.address}:8080`;
  }

  /** A page fetched from inside `from`'s namespace (busybox nc; its wget segfaults here), '' when it fails. */
  fetchFrom(from: Pod, host: string, port: number): string {
    try {
      return execFileSync('nsenter', [`--net=${from.netns}`, '--', 'busybox', 'nc', '-w', '2', host, String(port)], {
        input: 'GET / HTTP/1.0\r\n\r\n',
        encoding: 'utf8',
        stdio: 'pipe',
      });
    } catch {
      return '';
    }
  }

  /** Everything removed: servers, CNI DEL for each pod, the namespaces, the IPAM store. Never throws. */
  async down(): Promise<void> {
    for (const s of this.servers) s.kill('SIGKILL');
    for (const p of this.pods) {
      const call = { containerId: `${this.prefix}-${p.name}`, netns: p.netns, ifname: 'eth0' } as const;
      await cni({ ...call, command: 'DEL', conf: this.conf('bridge'), runIn: this.hosts }).catch(() => {});
    }
    for (const n of this.made.reverse()) {
      try {
        if (existsSync(`/run/netns/${n}`)) ip('netns', 'del', n);
      } catch {
        /* gone already */
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
