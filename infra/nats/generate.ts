/**
 * Print the nats-server config for the nats-server on this host (its version decides whether JetStream
 * gets `sync_interval: always`); the guarantee that holds goes to stderr.
 *
 *   npx tsx infra/nats/generate.ts [--store-dir DIR] [--port N] [--max-file-store SIZE] > /etc/nats-server.conf
 *
 * A cluster (src/bus/cluster-config.ts): one config per server, written to --out-dir as corral-<i>.conf.
 * With --hosts each server runs on its own machine (same ports everywhere); without, all on this one.
 * --auth FILE appends `include` of the authorization block infra/nats/gen-creds.ts wrote.
 *
 *   npx tsx infra/nats/generate.ts --cluster 3 --hosts 10.0.0.1,10.0.0.2,10.0.0.3 \
 *     --out-dir infra/nats/cluster [--auth auth.conf]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { natsClusterConfigs } from '../../src/bus/cluster-config.ts';
import { natsServerConfig } from '../../src/bus/nats-config.ts';
import { natsServerVersion } from '../../src/bus/server.ts';

const { values } = parseArgs({
  options: {
    'store-dir': { type: 'string', default: '/var/lib/corral/nats' },
    port: { type: 'string', default: '4222' },
    'max-file-store': { type: 'string', default: '8GB' },
    cluster: { type: 'string' },
    hosts: { type: 'string' },
    'out-dir': { type: 'string' },
    auth: { type: 'string' },
    'route-port': { type: 'string' },
  },
});
const version = await natsServerVersion();
if (values.cluster) {
  const hosts = values.hosts?.split(',').filter(Boolean);
  const c = natsClusterConfigs({
    version,
    dataDir: values['store-dir'],
    basePort: Number(values.port),
    size: Number(values.cluster),
    hosts,
    maxFileStore: values['max-file-store'],
    ...(values['route-port'] ? { routeBasePort: Number(values['route-port']) } : {}),
    ...(values.auth ? { extra: `include ${JSON.stringify(values.auth)}` } : {}),
  });
  const out = values['out-dir'] ?? '.';
  mkdirSync(out, { recursive: true });
  for (const s of c.servers) writeFileSync(join(out, `${s.name}.conf`), s.text);
  process.stderr.write(
    `${c.servers.map((s) => join(out, `${s.name}.conf`)).join(' ')}\n${c.guarantee}\nclients: --nats ${c.url}\n`,
  );
} else {
  const c = natsServerConfig({
    version,
    storeDir: values['store-dir'],
    port: Number(values.port),
    maxFileStore: values['max-file-store'],
  });
  process.stdout.write(c.text);
  process.stderr.write(`${c.guarantee}\n`);
}
