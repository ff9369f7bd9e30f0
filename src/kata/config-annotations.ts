/**
 * `io.katacontainers.*` annotation overrides at sandbox creation (kata-create-spec.md §3.5, §3.6).
 * Hypervisor keys are gated by `enable_annotations` (unanchored regexes, as Go's `regexp.MatchString`);
 * runtime and agent keys are not gated. Keys are processed in a fixed order, so the first error is
 * deterministic (Kata walks a Go map for the gate).
 */
import { err } from '../errors.ts';
import { checkNetNs, validateHypervisorConfig } from './config-check.ts';
import {
  BLOCK_DEVICE_DRIVERS,
  EXPERIMENTAL_FEATURES,
  MIN_MEMORY_MIB,
  NETWORK_MODELS,
  VFIO_MODES,
  type AgentConfig,
  type HypervisorConfig,
  type RuntimeConfig,
  type RuntimeSettings,
} from './config-types.ts';
import { type KataFs, nodeFs } from './fs.ts';
import { pathInGlobs } from './glob.ts';
import { type HostInfo, hostInfo } from './host.ts';
import { addKernelParams, parseKernelParams } from './kernel-params.ts';
import { readers } from './annotation-readers.ts';
import { deepFreeze, goList } from './util.ts';

export const HYPERVISOR_PREFIX = 'io.katacontainers.config.hypervisor.';
export const RUNTIME_PREFIX = 'io.katacontainers.config.runtime.';
export const AGENT_PREFIX = 'io.katacontainers.config.agent.';
export const VCPUS_PINNING_ANNOTATION = 'io.katacontainers.enable_vcpus_pinning';

export interface AnnotationOptions {
  /** @default nodeFs */
  readonly fs?: KataFs;
  /** @default hostInfo() */
  readonly host?: Pick<HostInfo, 'cpus' | 'maxVcpus'>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type Annotations = Readonly<Record<string, string>>;

/** The gate: every hypervisor key's suffix must match one `enable_annotations` regex. */
function checkGate(a: Annotations, enabled: readonly string[]): void {
  const res = enabled.flatMap((re) => {
    try {
      return [new RegExp(re)];
    } catch {
      return []; // a pattern that does not compile matches nothing: it enables no annotation
    }
  });
  for (const k of Object.keys(a).sort()) {
    if (k.startsWith(HYPERVISOR_PREFIX) && !res.some((re) => re.test(k.slice(HYPERVISOR_PREFIX.length)))) {
      throw err.invalid(`annotation ${k} is not enabled`);
    }
  }
}

async function hypervisorOverrides(
  a: Annotations,
  base: HypervisorConfig,
  fs: KataFs,
  host: Pick<HostInfo, 'cpus' | 'maxVcpus'>,
) {
  const { get, bool, uint } = readers(a);
  const K = (s: string) => HYPERVISOR_PREFIX + s;
  const h: Mutable<HypervisorConfig> = { ...base };

  const vcpus = uint(K('default_vcpus'));
  if (vcpus !== undefined) {
    if (vcpus > host.cpus) {
      throw err.invalid(
        `Number of cpus ${vcpus} specified in annotation default_vcpus is greater than ` +
          `the number of CPUs ${host.cpus} on the system`,
      );
    }
    h.defaultVcpus = vcpus;
  }
  const maxVcpus = uint(K('default_max_vcpus'));
  if (maxVcpus !== undefined) {
    if (maxVcpus > host.cpus) {
      throw err.invalid(
        `Number of cpus ${maxVcpus} in annotation default_maxvcpus is greater than ` +
          `the number of CPUs ${host.cpus} on the system`,
      );
    }
    if (maxVcpus > host.maxVcpus) {
      throw err.invalid(
        `Number of cpus ${maxVcpus} in annotation default_maxvcpus is greater than ` +
          `max no of CPUs ${host.maxVcpus} supported for qemu`,
      );
    }
    h.defaultMaxvcpus = maxVcpus;
  }
  const memory = uint(K('default_memory'));
  if (memory !== undefined) {
    if (memory < MIN_MEMORY_MIB) {
      throw err.invalid(
        `Memory specified in annotation ${K('default_memory')} is less than minimum required ${MIN_MEMORY_MIB}, ` +
          'please specify a larger value',
      );
    }
    h.defaultMemory = memory;
  }

  const driver = get(K('block_device_driver'));
  if (driver !== undefined) {
    if (!(BLOCK_DEVICE_DRIVERS as readonly string[]).includes(driver)) {
      throw err.invalid(
        `Invalid hypervisor block storage driver ${driver} specified in annotation ` +
          `(supported drivers: ${goList(BLOCK_DEVICE_DRIVERS)})`,
      );
    }
    h.blockDeviceDriver = driver;
  }

  const sharedFs = get(K('shared_fs'));
  if (sharedFs !== undefined) {
    const allowed = ['virtio-9p', 'virtio-fs'];
    if (!allowed.includes(sharedFs)) {
      throw err.invalid(
        `Invalid hypervisor shared file system ${sharedFs} specified for annotation shared_fs, ` +
          `(supported file systems: ${goList(allowed)})`,
      );
    }
    h.sharedFs = sharedFs;
  }
  const daemon = get(K('virtio_fs_daemon'));
  if (daemon !== undefined) {
    if (!(await pathInGlobs(fs, h.validVirtioFsDaemonPaths, daemon)))
      throw err.invalid(`virtiofs daemon ${daemon} required from annotation is not valid`);
    h.virtioFsDaemon = daemon;
  }
  const extraArgs = get(K('virtio_fs_extra_args'));
  if (extraArgs !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(extraArgs);
    } catch (e) {
      throw err.invalid(`Error parsing virtiofsd extra arguments: ${(e as Error).message}`, e);
    }
    if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) {
      throw err.invalid('Error parsing virtiofsd extra arguments: expected a JSON array of strings');
    }
    h.virtioFsExtraArgs = [...h.virtioFsExtraArgs, ...parsed];
  }
  if (h.sharedFs === 'virtio-fs' && h.virtioFsDaemon === '')
    throw err.invalid('cannot enable virtio-fs without daemon path');
  const msize = uint(K('msize_9p'));
  if (msize !== undefined) {
    if (msize === 0) throw err.invalid('Error parsing annotation for msize_9p, please specify positive numeric value');
    h.msize9p = msize;
  }

  const hvPath = get(K('path'));
  if (hvPath !== undefined) {
    if (!(await pathInGlobs(fs, h.validHypervisorPaths, hvPath)))
      throw err.invalid(`hypervisor ${hvPath} required from annotation is not valid`);
    h.path = hvPath;
  }
  const params = get(K('kernel_params'));
  if (params) {
    try {
      h.kernelParams = addKernelParams(h.kernelParams, parseKernelParams(params));
    } catch (e) {
      throw err.invalid(`Error adding kernel parameters in annotation kernel_params : ${(e as Error).message}`, e);
    }
  }
  const machine = get(K('machine_type'));
  if (machine) h.machineType = machine;
  const entropy = get(K('entropy_source'));
  if (entropy !== undefined) {
    if (!(await pathInGlobs(fs, h.validEntropySources, entropy)))
      throw err.invalid(`entropy source ${entropy} required from annotation is not valid`);
    if (entropy) h.entropySource = entropy;
  }

  const flags = [
    ['disable_block_device_use', 'disableBlockDeviceUse'],
    ['enable_iommu', 'enableIommu'],
    ['enable_iommu_platform', 'enableIommuPlatform'],
    ['enable_hugepages', 'enableHugepages'],
    ['enable_mem_prealloc', 'enableMemPrealloc'],
    ['rootless', 'rootless'],
  ] as const;
  for (const [key, field] of flags) h[field] = bool(K(key)) ?? h[field];

  // Guest assets: Kata gates them only by enable_annotations; Corral also requires an allow-list,
  // since an initrd or image path makes the host read that file into the guest.
  const assets = [
    ['kernel', 'validKernelPaths'],
    ['image', 'validImagePaths'],
    ['initrd', 'validInitrdPaths'],
  ] as const;
  const asset = Object.fromEntries(assets.map(([k]) => [k, get(K(k))]));
  if (asset.image !== undefined && asset.initrd !== undefined) throw err.invalid('image and initrd cannot be both set');
  for (const [k, list] of assets) {
    const v = asset[k];
    if (v === undefined || v === '') continue;
    if (!(await pathInGlobs(fs, h[list], v))) throw err.invalid(`${k} ${v} required from annotation is not valid`);
    h[k] = v;
  }
  return validateHypervisorConfig(h, host.maxVcpus);
}

function runtimeOverrides(a: Annotations, base: RuntimeSettings): RuntimeSettings {
  const { get, bool } = readers(a);
  const K = (s: string) => RUNTIME_PREFIX + s;
  const r: Mutable<RuntimeSettings> = { ...base };
  const flags = [
    ['disable_guest_seccomp', 'disableGuestSeccomp'],
    ['sandbox_cgroup_only', 'sandboxCgroupOnly'],
    ['enable_pprof', 'enablePprof'],
    ['disable_new_netns', 'disableNewNetns'],
  ] as const;
  for (const [key, field] of flags) r[field] = bool(K(key)) ?? r[field];
  r.enableVcpusPinning = bool(VCPUS_PINNING_ANNOTATION) ?? r.enableVcpusPinning;
  const label = get(K('guest_selinux_label'));
  if (label !== undefined) r.guestSelinuxLabel = label;
  const exp = get(K('experimental'));
  if (exp !== undefined) {
    const features = exp.split(' ');
    const unknown = features.find((f) => !EXPERIMENTAL_FEATURES.includes(f));
    if (unknown !== undefined)
      throw err.invalid(`Unsupported experimental feature ${unknown} specified in annotation ${K('experimental')}`);
    r.experimental = features;
  }
  const model = get(K('internetworking_model'));
  if (model !== undefined) {
    if (!(NETWORK_MODELS as readonly string[]).includes(model))
      throw err.invalid(`Unknown network model specified in annotation ${K('internetworking_model')}`);
    r.internetworkingModel = model === 'default' ? 'tcfilter' : (model as RuntimeSettings['internetworkingModel']);
  }
  const vfio = get(K('vfio_mode'));
  if (vfio !== undefined) {
    if (!(VFIO_MODES as readonly string[]).includes(vfio))
      throw err.invalid(`Unknown VFIO mode "${vfio}" in annotation ${K('vfio_mode')}`);
    r.vfioMode = vfio as RuntimeSettings['vfioMode'];
  }
  checkNetNs(r);
  return r;
}

function agentOverrides(a: Annotations, base: AgentConfig): AgentConfig {
  const { get, bool, uint } = readers(a);
  const modules = get(`${AGENT_PREFIX}kernel_modules`);
  return {
    ...base,
    kernelModules: modules === undefined ? base.kernelModules : modules.split(';'),
    trace: bool(`${AGENT_PREFIX}enable_tracing`) ?? base.trace,
    containerPipeSize: uint(`${AGENT_PREFIX}container_pipe_size`) ?? base.containerPipeSize,
  };
}

/**
 * The sandbox's configuration after its annotations (call once, at sandbox creation). Supported
 * hypervisor keys: default_vcpus (≤ host CPUs), default_max_vcpus, default_memory (≥ 256),
 * block_device_driver, shared_fs (virtio-9p | virtio-fs), virtio_fs_daemon and entropy_source
 * (allow-lists), virtio_fs_extra_args, msize_9p (> 0), path (`valid_hypervisor_paths`), kernel_params
 * (appended), machine_type, kernel/image/initrd (Corral's `valid_*_paths`), and the booleans
 * disable_block_device_use, enable_iommu, enable_iommu_platform, enable_hugepages,
 * enable_mem_prealloc, rootless. Runtime: disable_guest_seccomp, sandbox_cgroup_only, enable_pprof,
 * disable_new_netns, guest_selinux_label, experimental, internetworking_model, vfio_mode, and
 * `io.katacontainers.enable_vcpus_pinning`. Agent: kernel_modules (`;`), enable_tracing,
 * container_pipe_size. Other keys are ignored, as in Kata.
 * @throws InvalidArgument with Kata's messages, e.g. `annotation <key> is not enabled`.
 */
export async function applyAnnotations(
  config: RuntimeConfig,
  annotations: Annotations,
  opts: AnnotationOptions = {},
): Promise<RuntimeConfig> {
  const fs = opts.fs ?? nodeFs;
  const host = opts.host ?? hostInfo();
  checkGate(annotations, config.hypervisor.enableAnnotations);
  const hypervisor = await hypervisorOverrides(annotations, config.hypervisor, fs, host);
  const runtime = runtimeOverrides(annotations, config.runtime);
  const agent = agentOverrides(annotations, config.agent);
  return deepFreeze({ ...config, hypervisor, runtime, agent });
}
