/**
 * A sandbox's network on QEMU's command line (pure; docs/decisions/0011-networking.md):
 * - QEMU runs inside the sandbox's network namespace (`nsenter --net=<netns> --`, before setpriv), so a
 *   tap is opened by name there (`-netdev tap,ifname=<tap>,script=no,downscript=no`: tcfilter; a rootless
 *   QEMU may, the network worker made the tap owned by the VMM user);
 * - a macvtap's character device is opened by the worker (as root) and handed to QEMU as an inherited fd
 *   (`-netdev tap,fd=<n>`), fds 3, 4, ... in the order of the NICs that are macvtaps;
 * - one `virtio-net-device` (microvm's virtio-mmio; `virtio-net-pci` on q35) per NIC, with the veth's MAC;
 * - the guest's /init configures them from `corral.net<i>=<name>,<mac>,<mtu>[,<cidr>...]` and
 *   `corral.route<j>=<4|6>,<dev>,<dst>,<gateway>` on the kernel command line (docs/guest-agent.md).
 */
import { err } from '../../errors.ts';
import type { GuestNic, SandboxNetwork } from '../../domain/network.ts';

/** The first fd a macvtap gets in QEMU (0-2 are stdio). */
export const FIRST_NET_FD = 3;
/** x86's COMMAND_LINE_SIZE is 2048 bytes with the NUL; Corral's own parameters need about 200. */
const MAX_NET_PARAMS = 1600;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const CIDR = /^[0-9a-fA-F.:]+\/\d{1,3}$/;
const DST = /^(default|[0-9a-fA-F.:]+(\/\d{1,3})?)$/;
const IP = /^[0-9a-fA-F.:]+$/;
const DEVICE = /^\/dev\/tap\d+$/;

/** Throws InvalidArgument naming the first bad field (every value ends up on QEMU's or the guest's command line). */
export function validateNetwork(n: SandboxNetwork): void {
  if (!n.netns.startsWith('/')) throw err.invalid(`network.netns ${JSON.stringify(n.netns)}: want an absolute path`);
  if (n.nics.length > 8) throw err.invalid(`network: ${n.nics.length} NICs, at most 8`);
  const names = new Set<string>();
  for (const [i, c] of n.nics.entries()) {
    const at = `network.nics[${i}]`;
    if (!IFNAME.test(c.name) || names.has(c.name))
      throw err.invalid(`${at}.name ${JSON.stringify(c.name)}: bad or repeated`);
    names.add(c.name);
    if (!MAC.test(c.mac)) throw err.invalid(`${at}.mac ${JSON.stringify(c.mac)}: want aa:bb:cc:dd:ee:ff`);
    if (!Number.isInteger(c.mtu) || c.mtu < 68 || c.mtu > 65535)
      throw err.invalid(`${at}.mtu ${c.mtu}: want 68..65535`);
    for (const a of c.addrs) if (!CIDR.test(a)) throw err.invalid(`${at}.addrs: ${JSON.stringify(a)} is not a CIDR`);
    if (!IFNAME.test(c.tap.name)) throw err.invalid(`${at}.tap.name ${JSON.stringify(c.tap.name)}: bad`);
    if (c.tap.kind === 'macvtap' && !DEVICE.test(c.tap.device))
      throw err.invalid(`${at}.tap.device ${JSON.stringify(c.tap.device)}: want /dev/tap<N>`);
  }
  for (const [i, r] of n.routes.entries()) {
    const ok = (r.family === 4 || r.family === 6) && DST.test(r.dst) && names.has(r.dev);
    if (!ok || (r.gateway !== undefined && !IP.test(r.gateway)))
      throw err.invalid(`network.routes[${i}] ${JSON.stringify(r)}: bad family, dst, gateway or dev`);
  }
  if (netKernelParams(n).length > MAX_NET_PARAMS)
    throw err.invalid(
      `network: the guest's configuration is longer than ${MAX_NET_PARAMS} bytes of kernel command line`,
    );
}

/** Per NIC, the character device the worker opens for it (fd 3 + i), or null (a tap). */
export const macvtapDevices = (n: SandboxNetwork | undefined): (string | null)[] =>
  (n?.nics ?? []).map((c) => (c.tap.kind === 'macvtap' ? c.tap.device : null));

/** `-netdev` and `-device` pairs, one per NIC; `tapFds`: the taps come as fds too (a rootless QEMU). */
export function netArgs(n: SandboxNetwork | undefined, mmio: boolean, tapFds: boolean): string[] {
  return (n?.nics ?? []).flatMap((c: GuestNic, i) => [
    '-netdev',
    c.tap.kind === 'tap' && !tapFds
      ? `tap,id=net${i},ifname=${c.tap.name},script=no,downscript=no`
      : `tap,id=net${i},fd=${FIRST_NET_FD + i}`,
    '-device',
    `virtio-net-${mmio ? 'device' : 'pci'},netdev=net${i},mac=${c.mac}`,
  ]);
}

/**
 * `perl -e TAP_OPENER <fd>:<tap>... -- <cmd> <args>`: opens /dev/net/tun once per tap, attaches it
 * (TUNSETIFF with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as QEMU asks for itself, so the guest keeps
 * its checksum and TSO offloads; the ioctl number and the 40-byte ifreq of x86-64), moves it to its
 * fd and execs the command, which inherits them (`$^F`: perl opens them without close-on-exec; `@keep`: a
 * handle that is already at its fd must outlive the loop, or perl closes it).
 */
const TAP_OPENER = [
  'use strict; use POSIX (); $^F = 1023;',
  'my (@m, @keep); push @m, shift @ARGV while @ARGV && $ARGV[0] ne "--"; shift @ARGV;',
  'for (@m) { my ($fd, $name) = split /:/, $_, 2;',
  '  open(my $t, "+<", "/dev/net/tun") or die "open /dev/net/tun: $!\n";',
  '  ioctl($t, 0x400454ca, pack("Z16 s x22", $name, 0x5002)) or die "TUNSETIFF $name: $!\n";',
  '  if (fileno($t) == $fd) { push @keep, $t; next; }',
  '  defined POSIX::dup2(fileno($t), $fd) or die "dup2 $fd: $!\n"; close $t; }',
  'exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!\n";',
].join('\n');

/** The command with a rootless QEMU's taps opened for it (as it is without taps, or for a root QEMU). */
export function withTapFds(
  n: SandboxNetwork | undefined,
  rootless: boolean,
  cmd: string,
  argv: string[],
): [string, string[]] {
  const taps = (n?.nics ?? []).flatMap((c, i) => (c.tap.kind === 'tap' ? [`${FIRST_NET_FD + i}:${c.tap.name}`] : []));
  return rootless && taps.length ? ['perl', ['-e', TAP_OPENER, ...taps, '--', cmd, ...argv]] : [cmd, argv];
}

/** The guest's network on its kernel command line ('' without a network). */
export function netKernelParams(n: SandboxNetwork | undefined): string {
  if (!n) return '';
  return [
    ...n.nics.map((c, i) => `corral.net${i}=${[c.name, c.mac, c.mtu, ...c.addrs].join(',')}`),
    ...n.routes.map((r, j) => `corral.route${j}=${[r.family, r.dev, r.dst, r.gateway ?? ''].join(',')}`),
  ].join(' ');
}

/** The command that runs `cmd argv` inside the sandbox's network namespace (as it is without a network). */
export function inNetns(n: SandboxNetwork | undefined, cmd: string, argv: string[]): [string, string[]] {
  return n ? ['nsenter', [`--net=${n.netns}`, '--', cmd, ...argv]] : [cmd, argv];
}
