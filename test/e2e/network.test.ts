/**
 * Networking inside the guest, the way Kata does it, on real QEMU guests: the test builds its own network
 * (test-net.ts: a "hosts" namespace with the bridge, pod namespaces made by Debian's CNI plugins as
 * containerd's CRI plugin makes them, an HTTP server in a namespace of its own on the bridge) and hands
 * each sandbox its pod namespace in config.json. Nothing of it touches the host's root namespace; no
 * route leads anywhere but the bridge.
 *
 * Cases: tcfilter and macvtap (the guest's eth0 has CNI's address and routes; a process in it fetches a
 * page from the host namespace's server and from another sandbox, which the host namespace reaches too);
 * `none` (loopback only); a namespace Corral makes when config.json names none; a create that fails after
 * the network step (rollback) and the network worker SIGKILLed in setup and in teardown (convergence);
 * an agent that starts removes this node's network orphans. After each, no tap, qdisc or namespace Corral
 * made is left.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { localRuntimeConfig } from '../../src/cli/commands/up.ts';
import { corralNetns, linkAlias } from '../../src/domain/network.ts';
import { REPO, testNode, type TestNode } from '../helpers/node.ts';
import { netLeftovers } from '../helpers/net-leaks.ts';
import { TestNet, type Pod } from '../helpers/test-net.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let net: TestNet;
let web: Pod;
const cfg = { tcfilter: '', macvtap: '', rootless: '' };
const ids: string[] = [];
const WEB_PAGE = 'hello-from-the-hosts-side';
const GET = (host: string) => `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${host} 8080`;

beforeAll(async () => {
  n = await testNode({ faults: true });
  net = new TestNet('n');
  web = await net.pod('web');
  await net.httpServer(web, WEB_PAGE);
  for (const model of ['tcfilter', 'macvtap'] as const) {
    cfg[model] = join(n.configs, `${model}.toml`);
    const toml = localRuntimeConfig(join(REPO, '.corral/guest'))
      .replace('internetworking_model = "none"', `internetworking_model = "${model}"`)
      .replace('disable_new_netns = true', 'disable_new_netns = false');
    writeFileSync(cfg[model], toml);
  }
  cfg.rootless = join(n.configs, 'rootless.toml');
  writeFileSync(
    cfg.rootless,
    readFileSync(cfg.tcfilter, 'utf8').replace('[hypervisor.qemu]', '[hypervisor.qemu]\nrootless = true'),
  );
});
/** The network worker's pid (its `__ping`): a SIGKILLed one is replaced by the agent's supervisor. */
const networkPid = () =>
  request<{ pid: number }>(n.nc, subjects.worker(n.node, 'network', '__ping'), {}, 5000).then((r) => r.pid);
afterAll(async () => {
  try {
    await n?.removeTasks(ids);
    await n?.cleanup();
  } finally {
    await net?.down();
  }
});

/** `corral run --rm` of a shell script in a sandbox on `pod`'s namespace; its stdout. */
async function runIn(id: string, pod: Pod | undefined, script: string, config?: string): Promise<string> {
  ids.push(id);
  const b = n.bundle(id, { args: ['sh', '-c', script], ...(pod ? { netns: pod.netns } : {}) });
  const r = await n.cli(['run', '--id', id, '--bundle', b, '--rm', ...(config ? ['--config', config] : [])]);
  expect(r.stderr).not.toMatch(/corral: /);
  expect(r.code).toBe(0);
  return r.stdout;
}

describe('a sandbox on a CNI bridge', () => {
  let b: Pod;
  it('tcfilter: the host namespace reaches a server in the guest, which has the address CNI assigned', async () => {
    b = await net.pod('b');
    const bundle = n.bundle('srv-b', { args: ['httpd', '-f', '-p', '8080', '-h', '/www'], netns: b.netns });
    mkdirSync(join(bundle, 'rootfs/www'));
    writeFileSync(join(bundle, 'rootfs/www/index.html'), 'hello-from-sandbox-b');
    ids.push('srv-b');
    await n.call('create', { id: 'srv-b', bundle, options: { configPath: cfg.tcfilter } });
    await n.call('start', { id: 'srv-b' });
    await waitFor(() => net.fetchFrom(web, b.address, 8080), {
      until: (page) => page.includes('hello-from-sandbox-b'),
      timeoutMs: 30_000,
      intervalMs: 200,
      what: `sandbox srv-b's page at ${b.address}:8080 from the web namespace`,
    });
  });

  it('tcfilter: eth0 has its address and routes; the guest fetches from the host namespace and sandbox b', async () => {
    const a = await net.pod('a');
    const out = await runIn(
      'net-a',
      a,
      `ip -o -4 addr show eth0; ip route; ${GET(web.address)}; ${GET(b.address)}`,
      cfg.tcfilter,
    );
    expect(out).toContain(`inet ${a.cidr}`);
    expect(out).toContain(`10.99.0.0/16 via ${net.gateway} dev eth0`);
    expect(out).toContain(WEB_PAGE);
    expect(out).toContain('hello-from-sandbox-b');
  });

  it('macvtap: the same, through a macvtap on the veth', async () => {
    const c = await net.pod('c');
    const out = await runIn('net-c', c, `ip -o -4 addr show eth0; ${GET(web.address)}; ${GET(b.address)}`, cfg.macvtap);
    expect(out).toContain(`inet ${c.cidr}`);
    expect(out).toContain(WEB_PAGE);
    expect(out).toContain('hello-from-sandbox-b');
  });

  it('rootless (QEMU as a VMM user): its tap is opened for it as root; the guest reaches the web', async () => {
    const r = await net.pod('r');
    const out = await runIn('net-r', r, `ip -o -4 addr show eth0; ${GET(web.address)}`, cfg.rootless);
    expect(out).toContain(`inet ${r.cidr}`);
    expect(out).toContain(WEB_PAGE);
  });

  it('delete (the network worker SIGKILLed in its teardown) leaves no tap or qdisc; CNI keeps its veth', async () => {
    const pid = await networkPid();
    await n.fault('network', 'teardown', 'crash');
    await n.call('kill', { id: 'srv-b', signal: 'SIGKILL' });
    await n.call('wait', { id: 'srv-b' });
    await n.call('delete', { id: 'srv-b' }, 120_000).catch(() => {}); // may report the pending cleanup; it goes on
    await n.expectNothingLeft(ids, 60_000);
    expect(net.fetchFrom(web, b.address, 8080)).toBe(''); // the guest is gone
    expect(existsSync(b.netns)).toBe(true);
    expect(await waitFor(networkPid, { until: (p) => p !== pid, what: 'a new network worker' })).not.toBe(pid);
  });
});

describe('without CNI interfaces', () => {
  it('internetworking_model = "none": loopback only, even with a namespace in config.json', async () => {
    const out = await runIn('net-none', net.pods[0], 'ip -o link');
    expect(out).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/m);
    expect(out.trim().split('\n')).toHaveLength(1);
  });

  it('no namespace in config.json: Corral makes one (loopback only) and removes it with the sandbox', async () => {
    const id = 'net-made';
    ids.push(id);
    await n.call('create', {
      id,
      bundle: n.bundle(id, { args: ['ip', '-o', 'link'] }),
      options: { configPath: cfg.tcfilter },
    });
    expect(existsSync(corralNetns(n.node, id))).toBe(true);
    await n.call('start', { id });
    expect(await n.call('wait', { id })).toMatchObject({ exitStatus: 0 });
    await n.call('delete', { id });
    await n.expectNothingLeft([id]);
  });
});

describe('failures leave nothing of the network behind', () => {
  it('a boot that fails after the tap step rolls back the taps and qdiscs', async () => {
    const d = await net.pod('d');
    const id = 'net-rb';
    ids.push(id);
    await n.fault('hypervisor', 'boot', 'fail');
    const bundle = n.bundle(id, { args: ['true'], netns: d.netns });
    await expect(n.call('create', { id, bundle, options: { configPath: cfg.tcfilter } })).rejects.toMatchObject({
      code: 'Internal',
    });
    await n.expectNothingLeft([id]);
  });

  it.each(['crash', 'crashAfter'] as const)(
    'the network worker SIGKILLed in setup (%s): the create rolls back',
    async (mode) => {
      const e = await net.pod(`e-${mode}`);
      const id = `net-k-${mode === 'crash' ? 'b' : 'a'}`;
      ids.push(id);
      await n.fault('network', 'setup', mode);
      const bundle = n.bundle(id, { args: ['true'], netns: e.netns });
      await expect(
        n.call('create', { id, bundle, options: { configPath: cfg.macvtap } }, 60_000),
      ).rejects.toMatchObject({
        code: 'Unavailable',
      });
      await n.expectNothingLeft([id], 60_000);
    },
  );
});

describe('reconciliation', () => {
  it("an agent that starts removes this node's taps, qdiscs and namespaces of sandboxes it does not hold", async () => {
    const g = await net.pod('ghost');
    const ns = g.netns.split('/').pop()!;
    const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
    ip('-n', ns, 'tuntap', 'add', 'dev', 'tap0_corral', 'mode', 'tap');
    ip('-n', ns, 'link', 'set', 'dev', 'tap0_corral', 'alias', linkAlias(n.node, 'ghost', 'eth0'));
    execFileSync('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'eth0', 'ingress']);
    ip('netns', 'add', corralNetns(n.node, 'ghost').split('/').pop()!);
    const planted = netLeftovers(n.node, [g.netns]);
    expect(planted).toHaveLength(3); // the tap, the ingress qdisc of eth0, the namespace
    await n.restartAgent();
    await waitFor(() => netLeftovers(n.node, [g.netns]), {
      until: (l) => l.length === 0,
      timeoutMs: 30_000,
      intervalMs: 200,
      what: 'the orphans removed by the restarted agent',
    });
  });
});
