import { describe, expect, it } from 'vitest';
import { natsClusterConfigs } from '../../src/bus/cluster-config.ts';
import { authorizationBlock, controllerPermissions, nodePermissions } from '../../src/bus/permissions.ts';

const v29 = { major: 2, minor: 9, patch: 10, text: '2.9.10' };
const v210 = { major: 2, minor: 10, patch: 22, text: '2.10.22' };

describe('natsClusterConfigs', () => {
  it('three servers on one machine: distinct client and route ports, own store dirs, all routes', () => {
    const c = natsClusterConfigs({ version: v29, dataDir: '/d', basePort: 4222 });
    expect(c.servers.map((s) => [s.name, s.port, s.routePort, s.storeDir])).toEqual([
      ['corral-1', 4222, 4225, '/d/corral-1'],
      ['corral-2', 4223, 4226, '/d/corral-2'],
      ['corral-3', 4224, 4227, '/d/corral-3'],
    ]);
    expect(c.url).toBe('nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224');
    const t = c.servers[1]!.text;
    expect(t).toContain('server_name: "corral-2"');
    expect(t).toContain('port: 4223');
    expect(t).toContain('store_dir: "/d/corral-2"');
    expect(t).toContain('pid_file: "/d/corral-2.pid"');
    // Routes to a server cut off without a reset close in seconds (the partition suite's cut-server).
    expect(t).toMatch(/^ping_interval: "2s"\nping_max: 3$/m);
    expect(t).toMatch(/cluster \{\n {2}name: "corral"\n {2}host: "127.0.0.1"\n {2}port: 4226\n/);
    expect(t).toContain(
      'routes: ["nats-route://127.0.0.1:4225", "nats-route://127.0.0.1:4226", "nats-route://127.0.0.1:4227"]',
    );
    expect(t).not.toContain('sync_interval');
    expect(c.syncAlways).toBe(false);
  });

  it('sync_interval: always from 2.10 on', () => {
    const c = natsClusterConfigs({ version: v210, dataDir: '/d', basePort: 4222 });
    expect(c.syncAlways).toBe(true);
    for (const s of c.servers) expect(s.text).toContain('  sync_interval: always');
  });

  it('one server per machine: same ports, routes to each host', () => {
    const c = natsClusterConfigs({
      version: v29,
      dataDir: '/var/lib/corral/nats',
      basePort: 4222,
      hosts: ['10.0.0.1', '10.0.0.2', '10.0.0.3'],
    });
    expect(c.servers.map((s) => [s.host, s.port, s.routePort])).toEqual([
      ['10.0.0.1', 4222, 6222],
      ['10.0.0.2', 4222, 6222],
      ['10.0.0.3', 4222, 6222],
    ]);
    expect(c.servers[2]!.text).toContain(
      'routes: ["nats-route://10.0.0.1:6222", "nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222"]',
    );
  });

  it('appends extra config (an authorization block) to every server', () => {
    const c = natsClusterConfigs({
      version: v29,
      dataDir: '/d',
      basePort: 4222,
      extra: 'authorization { users: [] }\n',
    });
    for (const s of c.servers) expect(s.text.trimEnd().endsWith('authorization { users: [] }')).toBe(true);
  });

  it('refuses bad sizes, host counts and ports', () => {
    expect(() => natsClusterConfigs({ version: v29, dataDir: '/d', basePort: 4222, size: 0 })).toThrow(/size/);
    expect(() => natsClusterConfigs({ version: v29, dataDir: '/d', basePort: 4222, hosts: ['a'] })).toThrow(/hosts/);
    expect(() => natsClusterConfigs({ version: v29, dataDir: '/d', basePort: 65534 })).toThrow(/range/);
    expect(() => natsClusterConfigs({ version: v29, dataDir: '/d', basePort: 4222, routeBasePort: 4223 })).toThrow(
      /overlap/,
    );
  });
});

describe('node permissions', () => {
  it('a node may publish only its own node, event and KV subjects', () => {
    const p = nodePermissions('n1');
    expect(p.publish.allow).toContain('corral.v1.node.n1.>');
    expect(p.publish.allow).toContain('corral.v1.evt.n1.>');
    expect(p.publish.allow).toContain('$KV.CORRAL_NODES.n1');
    expect(p.publish.allow).toContain('$KV.CORRAL_SNAPSHOTS.n1.>');
    expect(p.publish.allow).not.toContain('$JS.API.>');
    expect(p.publish.allow.filter((s) => /^corral\.|^\$KV\./.test(s)).every((s) => s.includes('.n1'))).toBe(true);
    expect(p.subscribe.allow).toEqual(['corral.v1.node.n1.>', '_INBOX.>']);
    expect(() => nodePermissions('a.b')).toThrow(/node name/);
    expect(() => nodePermissions('*')).toThrow(/node name/);
  });

  it("the controller reaches every node's createInline", () => {
    expect(controllerPermissions().publish.allow).toContain('corral.v1.node.*.task.createInline');
  });

  it('writes the authorization block', () => {
    const nkey = `U${'A'.repeat(55)}`;
    const b = authorizationBlock([
      { nkey, role: 'node:n1', permissions: nodePermissions('n1') },
      { nkey, role: 'admin' },
    ]);
    expect(b).toContain(`{ nkey: "${nkey}", permissions: {`);
    expect(b).toContain('subscribe: { allow: ["corral.v1.node.n1.>", "_INBOX.>"] }');
    expect(b).toContain(`{ nkey: "${nkey}" }`);
    expect(() => authorizationBlock([{ nkey: 'nope', role: 'x' }])).toThrow(/NKEY/);
  });
});
