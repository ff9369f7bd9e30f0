/** Guest kernel command line assembly (kata-create-spec.md §3.4). */
import { err } from '../errors.ts';

export interface KernelParam {
  readonly key: string;
  /** Empty for a bare flag (`agent.debug_console`). */
  readonly value: string;
}

/** `vc.DeserializeParams(strings.Fields(s))`: whitespace-separated, each split on its first `=`. */
export const parseKernelParams = (s: string): KernelParam[] =>
  s
    .split(/\s+/)
    .filter(Boolean)
    .map((f) => {
      const i = f.indexOf('=');
      return i < 0 ? { key: f, value: '' } : { key: f.slice(0, i), value: f.slice(i + 1) };
    });

/**
 * `AddKernelParam`, for several: appends (it does not replace; the guest kernel lets the last
 * occurrence of a key win, and `systemd.mask` legitimately appears twice).
 * @throws InvalidArgument `Empty kernel parameter` for a param with an empty key (`=x`).
 */
export function addKernelParams(list: readonly KernelParam[], more: readonly KernelParam[]): KernelParam[] {
  if (more.some((p) => p.key === '')) throw err.invalid('Empty kernel parameter');
  return [...list, ...more];
}

export interface KernelParamInputs {
  /** An image (not an initrd) boots systemd in the guest. */
  readonly usesImage: boolean;
  readonly blockDeviceDriver: string;
  readonly agent: { readonly debug: boolean; readonly trace: boolean; readonly enableDebugConsole: boolean };
  /** `kernel_params` from the TOML. */
  readonly user: readonly KernelParam[];
}

/**
 * `SetKernelParams`: systemd defaults (image only), `scsi_mod.scan=none` (virtio-scsi), agent params, then
 * the user's, which win.
 */
export function buildKernelParams(i: KernelParamInputs): KernelParam[] {
  const p = (key: string, value = ''): KernelParam => ({ key, value });
  const defaults = i.usesImage
    ? [
        p('systemd.unit', 'kata-containers.target'),
        p('systemd.mask', 'systemd-networkd.service'),
        p('systemd.mask', 'systemd-networkd.socket'),
      ]
    : [];
  const scsi = i.blockDeviceDriver === 'virtio-scsi' ? [p('scsi_mod.scan', 'none')] : [];
  const agent = [
    ...(i.agent.debug ? [p('agent.log', 'debug')] : []),
    ...(i.agent.trace ? [p('agent.trace', 'true')] : []),
    ...(i.agent.enableDebugConsole ? [p('agent.debug_console'), p('agent.debug_console_vport', '1026')] : []),
  ];
  return addKernelParams([...defaults, ...scsi, ...agent], i.user);
}

/** The command line text (`SerializeParams(params, "=")`): `key=value`, or the bare key for an empty value. */
export const kernelCmdline = (params: readonly KernelParam[]): string =>
  params
    .filter((p) => p.key !== '' || p.value !== '')
    .map((p) => (p.key === '' ? p.value : p.value === '' ? p.key : `${p.key}=${p.value}`))
    .join(' ');
