/**
 * Credentials for a Corral fleet: one NKEY user per node, plus `controller` (the fleet controller) and
 * `admin` (the CLI of an operator), and the nats-server `authorization` block that gives each node's
 * user only its own subjects (src/bus/permissions.ts: nodePermissions; docs/decisions/0007).
 *
 *   npx tsx infra/nats/gen-creds.ts --dir /etc/corral/creds --node n1 --node n2 --node n3 > /etc/nats/auth.conf
 *
 * Writes `<dir>/<name>.nk` (the seed, mode 0600) for every node and for controller and admin, and
 * `<dir>/auth.conf` (the block, also printed); include it from every server's config
 * (`include "auth.conf"`) or append it (startNatsCluster's `extra`). A seed that already exists is
 * kept, so running it again with one more node adds that node and rotates nothing. Each agent (and its
 * workers) then connects with `--creds <dir>/<node>.nk` or CORRAL_CREDS; copy only that file to the node.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createUser, fromSeed } from '@nats-io/nkeys';
import {
  authorizationBlock,
  controllerPermissions,
  nodePermissions,
  type AuthUser,
} from '../../src/bus/permissions.ts';

export interface GeneratedCreds {
  /** The `authorization { users: [...] }` block. */
  authorization: string;
  /** Seed file per name (nodes, `controller`, `admin`). */
  seedFiles: Record<string, string>;
  /** Public key per name. */
  publicKeys: Record<string, string>;
}

/** The seed in `file`, or a fresh one written there (0600). */
function seedFor(file: string): string {
  if (existsSync(file)) {
    const seed = readFileSync(file, 'utf8').trim();
    fromSeed(new TextEncoder().encode(seed)); // throws on a corrupt file
    chmodSync(file, 0o600);
    return seed;
  }
  const seed = new TextDecoder().decode(createUser().getSeed());
  writeFileSync(file, `${seed}\n`, { mode: 0o600 });
  chmodSync(file, 0o600); // the umask cannot widen it, but an existing dir's default ACL might
  return seed;
}

export function generateCreds(o: { dir: string; nodes: string[] }): GeneratedCreds {
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const nodes = [...new Set(o.nodes)];
  for (const n of nodes) {
    nodePermissions(n); // validates the name
    if (n === 'controller' || n === 'admin')
      throw new Error(`"${n}" is reserved for the ${n} user; name the node otherwise`);
  }
  const seedFiles: Record<string, string> = {};
  const publicKeys: Record<string, string> = {};
  const users: AuthUser[] = [];
  const add = (name: string, role: string, permissions: AuthUser['permissions']) => {
    const file = join(dir, `${name}.nk`);
    const pub = fromSeed(new TextEncoder().encode(seedFor(file))).getPublicKey();
    seedFiles[name] = file;
    publicKeys[name] = pub;
    users.push({ nkey: pub, role, permissions });
  };
  for (const n of nodes) add(n, `node:${n}`, nodePermissions(n));
  add('controller', 'controller', controllerPermissions());
  add('admin', 'admin (corral CLI of an operator): everything', undefined);
  const authorization = authorizationBlock(users);
  writeFileSync(join(dir, 'auth.conf'), authorization, { mode: 0o644 });
  return { authorization, seedFiles, publicKeys };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, node: { type: 'string', multiple: true } } });
  if (!values.dir || !values.node?.length) {
    process.stderr.write('usage: npx tsx infra/nats/gen-creds.ts --dir DIR --node NAME [--node NAME]...\n');
    process.exit(2);
  }
  const c = generateCreds({ dir: values.dir, nodes: values.node });
  process.stdout.write(c.authorization);
  process.stderr.write(
    `seeds (0600): ${Object.values(c.seedFiles).join(' ')}\n` +
      `authorization block: ${join(resolve(values.dir), 'auth.conf')}\n`,
  );
}
