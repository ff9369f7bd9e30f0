/**
 * The macvtap character devices of a sandbox's NICs, opened read-write by the hypervisor worker (root) for
 * QEMU to inherit: NIC i's as fd 3 + i (qemu-net.ts), so the result has one entry per NIC, null for a tap
 * (nothing at that fd; a rootless QEMU's taps are opened there by the tap opener). A rootless QEMU could not
 * open the devices itself. The caller closes them once QEMU is spawned. A device that does not open closes
 * those opened before it.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { err } from '../../errors.ts';
import type { SandboxNetwork } from '../../domain/network.ts';
import { macvtapDevices } from './qemu-net.ts';

export function openMacvtaps(n: SandboxNetwork | undefined): (number | null)[] {
  const fds: (number | null)[] = [];
  for (const dev of macvtapDevices(n)) {
    try {
      fds.push(dev === null ? null : openSync(dev, constants.O_RDWR));
    } catch (e) {
      for (const fd of fds) if (fd !== null) closeSync(fd);
      throw err.notFound(`macvtap ${dev} does not open: ${(e as Error).message}`, e);
    }
  }
  return fds;
}
