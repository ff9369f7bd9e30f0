/**
 * Print the nats-server config for the nats-server on this host (its version decides whether JetStream
 * gets `sync_interval: always`); the guarantee that holds goes to stderr.
 *
 *   npx tsx infra/nats/generate.ts [--store-dir DIR] [--port N] [--max-file-store SIZE] > /etc/nats-server.conf
 */
import { parseArgs } from 'node:util';
import { natsServerConfig } from '../../src/bus/nats-config.ts';
import { natsServerVersion } from '../../src/bus/server.ts';

const { values } = parseArgs({
  options: { 'store-dir': { type: 'string', default: '/var/lib/corral/nats' }, port: { type: 'string', default: '4222' }, 'max-file-store': { type: 'string', default: '8GB' } },
});
const c = natsServerConfig({ version: await natsServerVersion(), storeDir: values['store-dir']!, port: Number(values.port), maxFileStore: values['max-file-store'] });
process.stdout.write(c.text);
process.stderr.write(`${c.guarantee}\n`);
