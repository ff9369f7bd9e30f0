/** mountinfo reading (src/workers/mount/mountinfo.ts): the filtered read returns every mount at or below a path. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeOctal, mountsAtOrBelow, readMountInfo, stackAt } from '../../src/workers/mount/mountinfo.ts';

const dir = mkdtempSync(join(tmpdir(), 'corral-mountinfo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const line = (id: number, point: string, source = 'src') =>
  `${id} 1 0:${id} / ${encodeOctal(point)} rw,relatime shared:1 - tmpfs ${source} rw`;
const file = join(dir, 'mountinfo');
writeFileSync(
  file,
  [
    line(1, '/'),
    line(2, '/tmp'),
    line(3, '/srv/a b'),
    line(4, '/srv/a b/c'),
    line(5, '/srv/a bc'),
    line(6, '/srv/a b'),
    line(7, '/srv/other', '/srv/a b'),
    '',
  ].join('\n'),
);

describe('readMountInfo', () => {
  it('escapes as the kernel does', () => {
    expect(encodeOctal('/a b\\c\td\ne')).toBe('/a\\040b\\134c\\011d\\012e');
  });

  it('with `under`, keeps every mount at or below it, in mount order, and the stacks', async () => {
    const all = await readMountInfo(file);
    const some = await readMountInfo(file, '/srv/a b');
    expect(some.length).toBeLessThan(all.length);
    expect(mountsAtOrBelow(some, '/srv/a b')).toEqual(mountsAtOrBelow(all, '/srv/a b'));
    expect(stackAt(some, '/srv/a b').map((e) => e.id)).toEqual([3, 6]);
    expect(mountsAtOrBelow(some, '/srv/a b').map((e) => e.id)).toEqual([3, 4, 6]);
  });

  it('reads nothing of a path nothing is mounted at or below', async () => {
    expect(await readMountInfo(file, '/srv/none')).toEqual([]);
  });
});
