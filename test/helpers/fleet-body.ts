/** A fleet create's body for the tests: examples/hello's spec running `sleep 600`, its rootfs bound read-only. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './node.ts';

const spec = JSON.parse(readFileSync(join(REPO, 'examples/hello/config.json'), 'utf8')) as Record<string, unknown>;
const rootfs = [{ type: 'bind', source: join(REPO, 'examples/hello/rootfs'), options: ['rbind', 'ro'] }];

export const sleeperCreateBody = (id: string) => ({
  id,
  spec: { ...spec, process: { ...(spec.process as object), args: ['sleep', '600'] } },
  rootfs,
  labels: {},
  policy: 'spread',
});
