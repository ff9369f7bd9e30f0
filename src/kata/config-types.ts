/**
 * The runtime configuration Corral reads from a Kata-compatible `configuration.toml`
 * (kata-create-spec.md §3.3). Each table is described by a schema (TOML key → value kind); the
 * resolved config uses the same keys in camelCase (`default_maxvcpus` → `defaultMaxvcpus`,
 * `msize_9p` → `msize9p`), so a TOML key and its field never drift apart.
 */
import type { KernelParam } from './kernel-params.ts';

/** How a TOML value is checked. Integers carry their Go width; `strings` is an array of strings. */
export type Kind = 'string' | 'bool' | 'strings' | 'int32' | 'uint32' | 'uint64' | 'int64';
export type ValueOf<K extends Kind> = K extends 'string'
  ? string
  : K extends 'bool'
    ? boolean
    : K extends 'strings'
      ? readonly string[]
      : number;
type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
/** A table's resolved shape: every schema key, camelCased, with its value type. */
export type Decoded<S extends Readonly<Record<string, Kind>>> = {
  readonly [K in keyof S & string as Camel<K>]: ValueOf<S[K]>;
};
/** A table as written: TOML keys, only those present. */
export type Raw<S extends Readonly<Record<string, Kind>>> = { readonly [K in keyof S]?: ValueOf<S[K]> };

/** `[hypervisor.<name>]` keys. Corral additions: `valid_kernel_paths`, `valid_image_paths`, `valid_initrd_paths`. */
export const HYPERVISOR_KEYS = {
  path: 'string',
  kernel: 'string',
  image: 'string',
  initrd: 'string',
  firmware: 'string',
  firmware_volume: 'string',
  pflashes: 'strings',
  rootfs_type: 'string',
  machine_type: 'string',
  machine_accelerators: 'string',
  cpu_features: 'string',
  kernel_params: 'string',
  default_vcpus: 'int32',
  default_maxvcpus: 'uint32',
  default_memory: 'uint32',
  default_maxmemory: 'uint64',
  memory_slots: 'uint32',
  memory_offset: 'uint64',
  default_bridges: 'uint32',
  disable_block_device_use: 'bool',
  block_device_driver: 'string',
  block_device_aio: 'string',
  block_device_cache_set: 'bool',
  block_device_cache_direct: 'bool',
  block_device_cache_noflush: 'bool',
  shared_fs: 'string',
  virtio_fs_daemon: 'string',
  virtio_fs_cache: 'string',
  virtio_fs_cache_size: 'uint32',
  virtio_fs_queue_size: 'uint32',
  virtio_fs_extra_args: 'strings',
  msize_9p: 'uint32',
  rootless: 'bool',
  enable_annotations: 'strings',
  valid_hypervisor_paths: 'strings',
  valid_jailer_paths: 'strings',
  valid_ctlpaths: 'strings',
  valid_virtio_fs_daemon_paths: 'strings',
  valid_vhost_user_store_paths: 'strings',
  valid_file_mem_backends: 'strings',
  valid_entropy_sources: 'strings',
  valid_kernel_paths: 'strings',
  valid_image_paths: 'strings',
  valid_initrd_paths: 'strings',
  hot_plug_vfio: 'string',
  cold_plug_vfio: 'string',
  enable_debug: 'bool',
  enable_iothreads: 'bool',
  enable_mem_prealloc: 'bool',
  enable_hugepages: 'bool',
  enable_virtio_mem: 'bool',
  enable_iommu: 'bool',
  enable_iommu_platform: 'bool',
  disable_nesting_checks: 'bool',
  disable_image_nvdimm: 'bool',
  disable_vhost_net: 'bool',
  confidential_guest: 'bool',
  sev_snp_guest: 'bool',
  enable_guest_swap: 'bool',
  disable_seccomp: 'bool',
  disable_selinux: 'bool',
  disable_guest_selinux: 'bool',
  use_legacy_serial: 'bool',
  entropy_source: 'string',
  guest_hook_path: 'string',
  vhost_user_store_path: 'string',
  enable_vhost_user_store: 'bool',
  vhost_user_reconnect_timeout_sec: 'uint32',
  file_mem_backend: 'string',
  jailer_path: 'string',
  ctlpath: 'string',
  seccompsandbox: 'string',
  extra_monitor_socket: 'string',
  guest_memory_dump_path: 'string',
  guest_memory_dump_paging: 'bool',
  rx_rate_limiter_max_rate: 'uint64',
  tx_rate_limiter_max_rate: 'uint64',
  disk_rate_limiter_bw_max_rate: 'int64',
  disk_rate_limiter_bw_one_time_burst: 'int64',
  disk_rate_limiter_ops_max_rate: 'int64',
  disk_rate_limiter_ops_one_time_burst: 'int64',
  net_rate_limiter_bw_max_rate: 'int64',
  net_rate_limiter_bw_one_time_burst: 'int64',
  net_rate_limiter_ops_max_rate: 'int64',
  net_rate_limiter_ops_one_time_burst: 'int64',
} as const satisfies Record<string, Kind>;

/**
 * Compiled defaults (§3.3 column a), used when the key is absent or holds its zero value
 * (`""`, `0`), as Kata's getters do; for booleans only when absent.
 */
export const HYPERVISOR_DEFAULTS = {
  path: '/usr/bin/qemu-system-x86_64',
  kernel: '/usr/share/kata-containers/vmlinuz.container',
  rootfs_type: 'ext4',
  machine_type: 'q35',
  memory_slots: 10,
  default_bridges: 1,
  block_device_driver: 'virtio-scsi',
  block_device_aio: 'io_uring',
  shared_fs: 'virtio-fs',
  virtio_fs_cache: 'never',
  msize_9p: 8192,
  hot_plug_vfio: 'no-port',
  cold_plug_vfio: 'no-port',
  disable_guest_selinux: true,
  entropy_source: '/dev/urandom',
  vhost_user_store_path: '/var/run/kata-containers/vhost-user/',
} as const satisfies Raw<typeof HYPERVISOR_KEYS>;

/** The resolved hypervisor section; `kernelParams` is the final guest command line (§3.4). */
export type HypervisorConfig = Omit<Decoded<typeof HYPERVISOR_KEYS>, 'kernelParams'> & {
  readonly kernelParams: readonly KernelParam[];
};

/** Valid `[hypervisor.<name>]` names (3.2.0). Corral implements `qemu` only. */
export const HYPERVISOR_NAMES = ['qemu', 'clh', 'firecracker', 'acrn', 'dragonball'] as const;
export const BLOCK_DEVICE_DRIVERS = ['virtio-scsi', 'virtio-blk', 'virtio-mmio', 'nvdimm', 'virtio-blk-ccw'] as const;
export const BLOCK_DEVICE_AIO = ['io_uring', 'native', 'threads'] as const;
export const SHARED_FS = ['virtio-9p', 'virtio-fs', 'virtio-fs-nydus', 'none'] as const;
export const PCIE_PORTS = ['no-port', 'bridge-port', 'root-port', 'switch-port'] as const;
export const EXTRA_MONITOR_SOCKETS = ['hmp', 'qmp', 'qmp-pretty'] as const;
/** `vc.MinHypervisorMemory`, MiB. */
export const MIN_MEMORY_MIB = 256;
export const DEFAULT_MEMORY_MIB = 2048;
export const MAX_PCI_BRIDGES = 5;

/** `[runtime]` keys. */
export const RUNTIME_KEYS = {
  enable_debug: 'bool',
  enable_tracing: 'bool',
  internetworking_model: 'string',
  disable_guest_seccomp: 'bool',
  enable_vcpus_pinning: 'bool',
  guest_selinux_label: 'string',
  jaeger_endpoint: 'string',
  jaeger_user: 'string',
  jaeger_password: 'string',
  disable_new_netns: 'bool',
  sandbox_cgroup_only: 'bool',
  static_sandbox_resource_mgmt: 'bool',
  sandbox_bind_mounts: 'strings',
  vfio_mode: 'string',
  disable_guest_empty_dir: 'bool',
  experimental: 'strings',
  enable_pprof: 'bool',
} as const satisfies Record<string, Kind>;

/** `default` means `tcfilter` and is stored as such. */
export const NETWORK_MODELS = ['default', 'macvtap', 'tcfilter', 'none'] as const;
export type NetworkModel = 'macvtap' | 'tcfilter' | 'none';
export const VFIO_MODES = ['vfio', 'guest-kernel'] as const;
export type VfioMode = (typeof VFIO_MODES)[number];
/** Experimental feature names Corral knows. None yet: any name in `experimental` is rejected. */
export const EXPERIMENTAL_FEATURES: readonly string[] = [];

export type RuntimeSettings = Omit<Decoded<typeof RUNTIME_KEYS>, 'internetworkingModel' | 'vfioMode'> & {
  readonly internetworkingModel: NetworkModel;
  /** Defaults to `guest-kernel` (Kata 3.2.0 intends this but falls back to `vfio`, a [C-bug]). */
  readonly vfioMode: VfioMode;
};

/** `[factory]` keys. */
export const FACTORY_KEYS = {
  enable_template: 'bool',
  template_path: 'string',
  vm_cache_number: 'uint64',
  vm_cache_endpoint: 'string',
} as const satisfies Record<string, Kind>;
export const FACTORY_DEFAULTS = {
  template_path: '/run/vc/vm/template',
  vm_cache_endpoint: '/var/run/kata-containers/cache.sock',
} as const satisfies Raw<typeof FACTORY_KEYS>;
export type FactoryConfig = Decoded<typeof FACTORY_KEYS>;

/** `[agent.<name>]` keys. */
export const AGENT_KEYS = {
  enable_debug: 'bool',
  enable_tracing: 'bool',
  kernel_modules: 'strings',
  debug_console_enabled: 'bool',
  dial_timeout: 'uint32',
} as const satisfies Record<string, Kind>;

/** The agent config (`vc.KataAgentConfig`); all zero when the file has no `[agent.*]` table. */
export interface AgentConfig {
  readonly longLiveConn: boolean;
  readonly debug: boolean;
  readonly trace: boolean;
  readonly kernelModules: readonly string[];
  readonly enableDebugConsole: boolean;
  /** Seconds. */
  readonly dialTimeout: number;
  /** Set only by the `agent.container_pipe_size` annotation. */
  readonly containerPipeSize: number;
}

/** A loaded, checked and deep-frozen runtime configuration. */
export interface RuntimeConfig {
  /** The resolved main file. */
  readonly configPath: string;
  readonly hypervisorType: 'qemu';
  readonly hypervisor: HypervisorConfig;
  readonly agent: AgentConfig;
  readonly factory: FactoryConfig;
  readonly runtime: RuntimeSettings;
  /** Things Kata only logs (unknown keys, an image larger than VM memory): the caller decides. */
  readonly warnings: readonly string[];
}
