/**
 * containerd through the corral runtime (issue 9), next to what it is compared with in the same run:
 *
 *   ctr run (corral)   `ctr run --rm --runtime io.containerd.corral.v2 IMG id true`: containerd, the shim
 *                      (start, ttrpc, delete), the agent, a QEMU guest
 *   corral run         `corral run --bundle B --rm` of `true` in the same busybox-static rootfs: the same
 *                      guest work without containerd and the shim (the shim's overhead is the ratio)
 *   ctr run (runc)     the same ctr run with Debian's runc: a container without a VM, for scale
 */
import { randomBytes } from 'node:crypto';
import { corralContainerd, IMAGE } from '../test/helpers/corral-containerd.ts';

export async function benchContainerd(runs: number, time: (n: number, f: () => Promise<void>) => Promise<number[]>) {
  const k = await corralContainerd();
  const ok = (what: string, r: { code: number; stderr?: string }) => {
    if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr ?? ''}`);
  };
  try {
    const id = () => randomBytes(32).toString('hex');
    const bundle = k.n.bundle('bench-true', { args: ['true'] });
    const ctrCorral = await time(runs, async () => ok('ctr run corral', await k.run(['--rm', IMAGE, id(), 'true'])));
    const corralRun = await time(runs, async () =>
      ok('corral run', await k.n.cli(['run', '--bundle', bundle, '--id', `b-${id().slice(0, 8)}`, '--rm'])),
    );
    const runc = await time(runs, async () => ok('ctr run runc', await k.c.ctr(['run', '--rm', IMAGE, id(), 'true'])));
    return { ctrCorral, corralRun, runc };
  } finally {
    await k.stop();
  }
}
