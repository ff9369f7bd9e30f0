/**
 * The pure parts of networking: Kata's namespace decision, the plan's network steps and their undo, the
 * link alias, the network worker's and `boot`'s request parsers, and what QEMU's command line and the
 * guest's kernel command line get (docs/decisions/0011-networking.md).
 */
import { describe, expect, it } from 'vitest';
import { networkSteps } from '../../src/agent/create-network.ts';
import { decideReconcile } from '../../src/agent/reconcile-decide.ts';
import { corralNetns, linkAlias, parseLinkAlias, tapName, type SandboxNetwork } from '../../src/domain/network.ts';
import { decideNetns } from '../../src/kata/netns.ts';
import { compensationOf, compensationOfFailed } from '../../src/machines/compensation.ts';
import type { Step } from '../../src/domain/ops.ts';
import type { OciSpec, RuntimeSettings } from '../../src/kata/index.ts';
import {
  inNetns,
  macvtapDevices,
  netArgs,
  netKernelParams,
  validateNetwork,
  withTapFds,
} from '../../src/workers/hypervisor/qemu-net.ts';
import { parseNetwork } from '../../src/workers/hypervisor/validate-net.ts';
import { parseNetns, parseSetup, parseTeardown } from '../../src/workers/network/validate.ts';

const spec = (path?: string) => ({
  linux: { namespaces: path === undefined ? [] : [{ type: 'network', path }], resources: {}, devices: [] },
});
const rt = (model: 'tcfilter' | 'macvtap' | 'none', disableNewNetns = false) =>
  ({ internetworkingModel: model, disableNewNetns }) as const;
const notHost = async () => false;

describe("Kata's network namespace decision", () => {
  it('nothing with disable_new_netns or internetworking_model = "none"', async () => {
    expect(await decideNetns(spec('/run/netns/x'), rt('none', true), notHost)).toEqual({ action: 'none' });
    expect(await decideNetns(spec('/run/netns/x'), rt('none'), notHost)).toEqual({ action: 'none' });
  });
  it("config.json's path is used; none (or an entry without a path) means: make one", async () => {
    expect(await decideNetns(spec('/run/netns/x'), rt('tcfilter'), notHost)).toEqual({
      action: 'use',
      path: '/run/netns/x',
      model: 'tcfilter',
    });
    expect(await decideNetns(spec(), rt('macvtap'), notHost)).toEqual({ action: 'create', model: 'macvtap' });
    expect(await decideNetns(spec(''), rt('macvtap'), notHost)).toEqual({ action: 'create', model: 'macvtap' });
  });
  it("the host's own namespace, a relative path and a missing one are refused", async () => {
    await expect(decideNetns(spec('/proc/1/ns/net'), rt('tcfilter'), async () => true)).rejects.toMatchObject({
      code: 'InvalidArgument',
      message: 'Host networking requested, not supported by runtime',
    });
    await expect(decideNetns(spec('/proc/self/ns/net'), rt('tcfilter'))).rejects.toMatchObject({
      code: 'InvalidArgument',
    });
    await expect(decideNetns(spec('netns/x'), rt('tcfilter'))).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(decideNetns(spec('/run/netns/nope-corral-test'), rt('tcfilter'))).rejects.toMatchObject({
      code: 'NotFound',
    });
  });
});

describe('the plan and its undo', () => {
  const steps = (path: string | undefined, model: 'tcfilter' | 'none') =>
    networkSteps('n1', 'sb', spec(path) as unknown as OciSpec, rt(model) as unknown as RuntimeSettings);

  it('setupNetwork in the given namespace; createNetns first when config.json names none', async () => {
    expect(await steps(undefined, 'none')).toEqual([]);
    expect(await steps('/proc/1/ns/net-nope', 'tcfilter').catch((e: { code: string }) => e.code)).toBe('NotFound');
    const made = await steps(undefined, 'tcfilter');
    expect(made).toEqual([
      { phase: 'booting', kind: 'createNetns', args: { netns: '/run/netns/corral.n1.sb' } },
      {
        phase: 'booting',
        kind: 'setupNetwork',
        args: { sandboxId: 'sb', netns: corralNetns('n1', 'sb'), model: 'tcfilter' },
      },
    ]);
  });

  it('each is undone after success and after an unknown outcome, not after a clean failure', () => {
    const setup: Step = {
      phase: 'booting',
      kind: 'setupNetwork',
      args: { sandboxId: 'sb', netns: '/n', model: 'macvtap' },
    };
    const create: Step = { phase: 'booting', kind: 'createNetns', args: { netns: '/run/netns/corral.n1.sb' } };
    const teardown = { kind: 'teardownNetwork', args: { sandboxId: 'sb', netns: '/n' }, undoes: 'setupNetwork' };
    const remove = { kind: 'removeNetns', args: { netns: '/run/netns/corral.n1.sb' }, undoes: 'createNetns' };
    expect(compensationOf(setup, { netns: '/n', nics: [], routes: [] })).toEqual(teardown);
    expect(compensationOfFailed(setup, { code: 'Unavailable' })).toEqual(teardown);
    expect(compensationOfFailed(setup, { code: 'FailedPrecondition' })).toBeNull();
    // One that was there already is a dead worker's first attempt: removed as well.
    expect(compensationOf(create, { created: false })).toEqual(remove);
    expect(compensationOfFailed(create, { code: 'Timeout' })).toEqual(remove);
  });
});

describe('the link alias', () => {
  it('names the node, the sandbox and the veth, and parses back', () => {
    expect(linkAlias('n1', 'sb.1', 'eth0')).toBe('corral:n1:sb.1:eth0');
    expect(parseLinkAlias('corral:n1:sb.1:eth0')).toEqual({ node: 'n1', sandboxId: 'sb.1', veth: 'eth0' });
    expect(parseLinkAlias('corral:n1:sb')).toBeNull();
    expect(parseLinkAlias('something else')).toBeNull();
    expect(tapName(0)).toBe('tap0_corral');
  });
});

describe('request parsers', () => {
  it("the network worker's: model, netns and sandbox id checked, never a TypeError", () => {
    expect(parseSetup({ sandboxId: 'sb', netns: '/run/netns/x', model: 'tcfilter' })).toEqual({
      sandboxId: 'sb',
      netns: '/run/netns/x',
      model: 'tcfilter',
    });
    for (const bad of [
      { sandboxId: 'sb', netns: '/x', model: 'none' },
      { sandboxId: 'sb', netns: 'x', model: 'tcfilter' },
      { sandboxId: 'sb', netns: '/a/../b', model: 'tcfilter' },
      { sandboxId: 'a:b', netns: '/x', model: 'tcfilter' },
      { sandboxId: 2n ** 64n - 1n, netns: '/x', model: 'tcfilter' },
      { sandboxId: 'sb', netns: '/x', model: 2n ** 64n - 1n },
    ])
      expect(() => parseSetup(bad)).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => parseTeardown({ sandboxId: 'sb', netns: {} })).toThrowError(/netns must be an absolute path/);
    expect(parseNetns('createNetns', { netns: '/run/netns/corral.n.s' })).toEqual({ netns: '/run/netns/corral.n.s' });
  });

  it("boot's network: shapes checked, naming the field", () => {
    const nic = {
      name: 'eth0',
      mac: 'aa:bb:cc:dd:ee:ff',
      mtu: 1500,
      addrs: ['10.0.0.2/24'],
      tap: { kind: 'tap', name: 'tap0_corral' },
    };
    expect(
      parseNetwork({ netns: '/n', nics: [nic], routes: [{ family: 4, dst: 'default', dev: 'eth0', gateway: null }] }),
    ).toEqual({
      netns: '/n',
      nics: [nic],
      routes: [{ family: 4, dst: 'default', dev: 'eth0' }],
    });
    expect(() =>
      parseNetwork({ netns: '/n', nics: [{ ...nic, tap: { kind: 9n, name: 't' } }], routes: [] }),
    ).toThrowError(/network\.nics\[0\]\.tap\.kind must be tap or macvtap, got bigint/);
    expect(() => parseNetwork({ netns: '/n', nics: [], routes: [{ family: 5, dst: 'x', dev: 'e' }] })).toThrowError(
      /routes\[0\]\.family must be 4 or 6/,
    );
  });
});

describe("QEMU's and the guest's command lines", () => {
  const net = (kind: 'tap' | 'macvtap'): SandboxNetwork => ({
    netns: '/run/netns/p1',
    nics: [0, 1].map((i) => ({
      name: `eth${i}`,
      mac: `aa:bb:cc:dd:ee:0${i}`,
      mtu: 1450,
      addrs: [`10.0.${i}.2/24`, `fd00::${i}/64`],
      tap:
        kind === 'tap'
          ? { kind, name: `tap${i}_corral` }
          : { kind, name: `tap${i}_corral`, device: `/dev/tap${7 + i}` },
    })),
    routes: [
      { family: 4, dst: 'default', gateway: '10.0.0.1', dev: 'eth0' },
      { family: 4, dst: '10.9.0.0/16', dev: 'eth1' },
    ],
  });

  it('one virtio-net device per NIC with its MAC; taps by name for a root QEMU, fds 3 + i otherwise', () => {
    expect(netArgs(net('tap'), true, false)).toEqual([
      '-netdev',
      'tap,id=net0,ifname=tap0_corral,script=no,downscript=no',
      '-device',
      'virtio-net-device,netdev=net0,mac=aa:bb:cc:dd:ee:00',
      '-netdev',
      'tap,id=net1,ifname=tap1_corral,script=no,downscript=no',
      '-device',
      'virtio-net-device,netdev=net1,mac=aa:bb:cc:dd:ee:01',
    ]);
    expect(netArgs(net('tap'), false, true).filter((a) => a.startsWith('tap,'))).toEqual([
      'tap,id=net0,fd=3',
      'tap,id=net1,fd=4',
    ]);
    expect(netArgs(net('macvtap'), false, false)[3]).toBe('virtio-net-pci,netdev=net0,mac=aa:bb:cc:dd:ee:00');
    expect(macvtapDevices(net('macvtap'))).toEqual(['/dev/tap7', '/dev/tap8']);
    expect(macvtapDevices(net('tap'))).toEqual([null, null]);
    expect(netArgs(undefined, true, false)).toEqual([]);
  });

  it('QEMU runs in the namespace; a rootless one gets its taps from the opener', () => {
    expect(inNetns(net('tap'), 'qemu', ['-m', '1'])).toEqual([
      'nsenter',
      ['--net=/run/netns/p1', '--', 'qemu', '-m', '1'],
    ]);
    expect(inNetns(undefined, 'qemu', [])).toEqual(['qemu', []]);
    expect(withTapFds(net('tap'), false, 'setpriv', ['x'])).toEqual(['setpriv', ['x']]);
    expect(withTapFds(net('macvtap'), true, 'setpriv', ['x'])).toEqual(['setpriv', ['x']]);
    const [cmd, argv] = withTapFds(net('tap'), true, 'setpriv', ['x']);
    expect(cmd).toBe('perl');
    expect(argv.slice(2)).toEqual(['3:tap0_corral', '4:tap1_corral', '--', 'setpriv', 'x']);
  });

  it("the guest's kernel parameters carry names, MACs, MTUs, addresses and routes", () => {
    expect(netKernelParams(net('tap'))).toBe(
      'corral.net0=eth0,aa:bb:cc:dd:ee:00,1450,10.0.0.2/24,fd00::0/64 ' +
        'corral.net1=eth1,aa:bb:cc:dd:ee:01,1450,10.0.1.2/24,fd00::1/64 ' +
        'corral.route0=4,eth0,default,10.0.0.1 corral.route1=4,eth1,10.9.0.0/16,',
    );
    expect(netKernelParams(undefined)).toBe('');
  });

  it('validation refuses what would break either command line', () => {
    const ok = net('macvtap');
    expect(() => validateNetwork(ok)).not.toThrow();
    const bad = (f: (n: SandboxNetwork) => void) => {
      const n = structuredClone(ok);
      f(n);
      return () => validateNetwork(n);
    };
    expect(bad((n) => (n.nics[0]!.mac = 'AA:BB'))).toThrowError(/mac/);
    expect(bad((n) => (n.nics[1]!.name = 'eth0'))).toThrowError(/bad or repeated/);
    expect(bad((n) => (n.nics[0]!.addrs = ['10.0.0.2 x']))).toThrowError(/CIDR/);
    expect(bad((n) => (n.nics[0]!.tap = { kind: 'macvtap', name: 't', device: '/etc/passwd' }))).toThrowError(/device/);
    expect(bad((n) => (n.routes[0]!.dev = 'eth9'))).toThrowError(/routes\[0\]/);
    expect(bad((n) => (n.nics[0]!.addrs = Array.from({ length: 200 }, (_, i) => `10.1.${i}.1/32`)))).toThrowError(
      /kernel command line/,
    );
  });
});

describe('reconciliation of the network', () => {
  it("tears down each gone sandbox's links once per namespace, then removes its namespace; live ones stay", () => {
    const actions = decideReconcile(
      {
        mounts: [],
        vms: [{ sandboxId: 'gone', pid: 9 }],
        users: [],
        sandboxDirs: [],
        netLinks: [
          { netns: '/run/netns/a', sandboxId: 'gone' },
          { netns: '/run/netns/a', sandboxId: 'gone' },
          { netns: '/run/netns/b', sandboxId: 'live' },
        ],
        netns: [
          { path: '/run/netns/corral.n1.gone', sandboxId: 'gone' },
          { path: '/run/netns/corral.n1.live', sandboxId: 'live' },
        ],
      },
      new Set(['live']),
      '/run/corral',
    );
    expect(actions).toEqual([
      { kind: 'stopVm', sandboxId: 'gone', pid: 9 },
      { kind: 'teardownNetwork', netns: '/run/netns/a', sandboxId: 'gone' },
      { kind: 'removeNetns', netns: '/run/netns/corral.n1.gone', sandboxId: 'gone' },
    ]);
  });
});
