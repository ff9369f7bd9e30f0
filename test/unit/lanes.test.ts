import { describe, expect, it } from 'vitest';
import { Lanes } from '../../src/util/lanes.ts';

/** Every pending microtask has run (promise chains settle before an immediate). */
const drained = () => new Promise<void>((r) => setImmediate(r));

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe('Lanes: one at a time per key', () => {
  it('runs calls of one key in call order, each after the previous settled, rejections included', async () => {
    const lanes = new Lanes();
    const log: string[] = [];
    const g = gate();
    const a = lanes.run('k', async () => {
      log.push('a start');
      await g.p;
      log.push('a end');
      throw new Error('a failed');
    });
    const b = lanes.run('k', async () => {
      log.push('b');
      return 2;
    });
    await drained();
    expect(log).toEqual(['a start']);
    g.open();
    await expect(a).rejects.toThrow('a failed');
    expect(await b).toBe(2);
    expect(log).toEqual(['a start', 'a end', 'b']);
  });

  it('runs different keys concurrently, and idle() waits for all', async () => {
    const lanes = new Lanes();
    const g = gate();
    const started: string[] = [];
    const x = lanes.run('x', async () => {
      started.push('x');
      await g.p;
    });
    const y = lanes.run('y', async () => {
      started.push('y');
    });
    await y;
    expect(started).toEqual(['x', 'y']);
    let idle = false;
    const done = lanes.idle().then(() => (idle = true));
    await drained();
    expect(idle).toBe(false);
    g.open();
    await x;
    await done;
    expect(idle).toBe(true);
  });
});
