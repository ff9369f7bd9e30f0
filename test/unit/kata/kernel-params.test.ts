import { describe, expect, it } from 'vitest';
import {
  addKernelParams,
  buildKernelParams,
  kernelCmdline,
  parseKernelParams,
} from '../../../src/kata/kernel-params.ts';
import { expectError } from './expect-error.ts';

const agent = { debug: false, trace: false, enableDebugConsole: false };

describe('kernel parameters (§3.4)', () => {
  it('parses whitespace-separated fields, splitting each on its first "="', () => {
    expect(parseKernelParams('  a=1  b  c=x=y\td=')).toEqual([
      { key: 'a', value: '1' },
      { key: 'b', value: '' },
      { key: 'c', value: 'x=y' },
      { key: 'd', value: '' },
    ]);
  });
  it('"Empty kernel parameter" for a key-less param', async () => {
    await expectError(() => addKernelParams([], parseKernelParams('=x')), 'InvalidArgument', 'Empty kernel parameter');
  });
  it("order: systemd defaults (image), scsi_mod.scan=none (virtio-scsi), agent params, then the user's", () => {
    const p = buildKernelParams({
      usesImage: true,
      blockDeviceDriver: 'virtio-scsi',
      agent: { debug: true, trace: true, enableDebugConsole: true },
      user: parseKernelParams('quiet scsi_mod.scan=all'),
    });
    expect(kernelCmdline(p)).toBe(
      'systemd.unit=kata-containers.target systemd.mask=systemd-networkd.service ' +
        'systemd.mask=systemd-networkd.socket scsi_mod.scan=none agent.log=debug agent.trace=true ' +
        'agent.debug_console agent.debug_console_vport=1026 quiet scsi_mod.scan=all',
    );
  });
  it('an initrd gets no systemd params; virtio-blk no scsi param', () => {
    expect(buildKernelParams({ usesImage: false, blockDeviceDriver: 'virtio-blk', agent, user: [] })).toEqual([]);
  });
  it('a user param with an empty key fails the build', async () => {
    await expectError(
      () =>
        buildKernelParams({
          usesImage: false,
          blockDeviceDriver: 'virtio-blk',
          agent,
          user: parseKernelParams('a =b'),
        }),
      'InvalidArgument',
      'Empty kernel parameter',
    );
  });
});
