/**
 * A private containerd whose `io.containerd.corral.v2` runtime is Corral: containerd-shim-corral-v2 (the
 * launcher `corral shim install` writes) first on containerd's PATH, talking to a real Corral node
 * (testNode: nats-server, agent, workers, QEMU guests) that accepts containerd's bundles; the busybox
 * image imported. `clean()` is the after-each check: no shim, no mount under containerd's dirs, nothing
 * of Corral's (QEMU, mounts, users, sandbox dirs).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { RUNTIME_TYPE } from '../../src/shim/launcher.ts';
import { startContainerd, type Containerd, type ContainerdOptions } from './containerd.ts';
import { testNode, type TestNode } from './node.ts';
import { buildBusyboxImage } from './oci-image.ts';
import { waitFor } from './wait.ts';

export const IMAGE = 'docker.io/library/busybox-local:latest';
/** A containerd-style id: 64 hex characters. */
export const hex64 = () => randomBytes(32).toString('hex');
/** `ctr task ls`'s line for `id` in status `s` (RUNNING, PAUSED, STOPPED). */
export const status = (id: string, s: string) => new RegExp(`${id}\\s+\\d+\\s+${s}`);

export async function corralContainerd(opts: ContainerdOptions = {}) {
  const shimDir = mkdtempSync('/tmp/crl-shim-bin-');
  let c: Containerd | undefined;
  let n: TestNode | undefined;
  try {
    c = await startContainerd({ ...opts, pathPrefix: [shimDir, ...(opts.pathPrefix ?? [])] });
    n = await testNode({ bundleRoots: [c.state] });
    // Installed as a user installs it: `corral shim install`, into a dir first on containerd's PATH.
    const shim = ['shim', 'install', '--root', shimDir, '--bin-dir', '/', '--nats', n.natsUrl, '--node', n.node];
    const installed = await n.cli(shim);
    expect(installed.code, installed.stderr).toBe(0);
    expect((await c.importImage(await buildBusyboxImage(join(c.dir, 'images')))).code).toBe(0);
  } catch (e) {
    // A setup that fails half way takes down what it started: the caller has nothing to stop.
    await c?.stop().catch(() => undefined);
    await n?.cleanup().catch(() => undefined);
    rmSync(shimDir, { recursive: true, force: true });
    throw e;
  }
  return corralContainerdOf(c, n, shimDir);
}

function corralContainerdOf(c: Containerd, n: TestNode, shimDir: string) {
  return {
    c,
    n,
    shimDir,
    /** `ctr task ls`'s output. */
    ls: async () => (await c.ctr(['task', 'ls'])).stdout,
    /** `ctr run --runtime io.containerd.corral.v2 ...`. */
    run: (args: string[], input?: string) =>
      c.ctr(['run', '--runtime', RUNTIME_TYPE, ...args], { input, timeoutMs: 120_000 }),
    async clean() {
      await waitFor(() => c.leftovers(), {
        until: (l) => l.shims.length === 0 && l.mounts.length === 0,
        timeoutMs: 30_000,
        what: 'no shim and no mount left by containerd',
      }).catch(() => undefined); // the assertion below shows what is left
      expect(c.leftovers()).toEqual({ shims: [], mounts: [] });
      await n.expectNothingLeft();
    },
    async stop() {
      await c.stop();
      await n.cleanup();
      rmSync(shimDir, { recursive: true, force: true });
    },
  };
}
export type CorralContainerd = Awaited<ReturnType<typeof corralContainerd>>;
