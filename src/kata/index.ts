/** Kata Containers' create-path rules, reimplemented (kata-create-spec.md). */
export { verifyContainerId, ID_PATTERN, MAX_ID_LENGTH } from './ids.ts';
export { validBundle } from './bundle.ts';
export { parseSpec, readSpec, envForProcess, HOOK_KINDS } from './oci.ts';
export type {
  OciSpec,
  OciProcess,
  OciUser,
  OciCapabilities,
  OciRoot,
  OciMount,
  OciResources,
  OciNamespace,
  OciDevice,
  OciHook,
  OciHooks,
  OciLinux,
  EnvVar,
} from './oci.ts';
export {
  containerType,
  sandboxIdOf,
  isSandbox,
  isCriSandbox,
  isCrioContainerManager,
  CONTAINER_TYPE_KEYS,
  SANDBOX_ID_KEYS,
} from './container-type.ts';
export type { ContainerType } from './container-type.ts';
export {
  calculateSandboxSizing,
  calculateContainerSizing,
  calculateVmResources,
  applyStaticSizing,
  SANDBOX_CPU_PERIOD,
  SANDBOX_CPU_QUOTA,
  SANDBOX_MEMORY,
} from './sizing.ts';
export type { Sizing, StaticSizing } from './sizing.ts';
export { resolveConfigPath, CONFIG_PATH_ANNOTATION } from './config-resolve.ts';
export type { ConfigPathInputs, ConfigPathSource, ResolvedConfigPath } from './config-resolve.ts';
export { loadRuntimeConfig } from './config-load.ts';
export { cachedRuntimeConfig, type ConfigLoader } from './config-cache.ts';
export type { LoadOptions } from './config-load.ts';
export { applyAnnotations } from './config-annotations.ts';
export type { AnnotationOptions } from './config-annotations.ts';
export type {
  RuntimeConfig,
  HypervisorConfig,
  AgentConfig,
  FactoryConfig,
  RuntimeSettings,
  NetworkModel,
  VfioMode,
} from './config-types.ts';
export { kernelCmdline } from './kernel-params.ts';
export type { KernelParam } from './kernel-params.ts';
export { setEphemeralStorageType, isEmptyDirSource, isTmpfsMountPoint } from './empty-dir.ts';
export { decideRootfs, isBlockDevice, NYDUS_ROOTFS_TYPE } from './rootfs.ts';
export type { RootfsEntry, RootfsAction, RootfsDecision, RootfsOptions } from './rootfs.ts';
export { nodeFs } from './fs.ts';
export type { KataFs } from './fs.ts';
export { hostInfo } from './host.ts';
export { decideNetns, netnsPathOf } from './netns.ts';
export type { NetnsDecision } from './netns.ts';
export type { HostInfo } from './host.ts';
export {
  planMounts,
  resolveBindSources,
  hostBindIndexes,
  DEFAULT_DEVICES,
  DEFAULT_SHM,
  MAX_MOUNTS,
} from './oci-mounts.ts';
export type { GuestMountSpec, HostMountStep, MountPlan, BindSource, MountContext } from './oci-mounts.ts';
export { MS, parseMountOptions } from './mount-options.ts';
export type { ParsedOptions } from './mount-options.ts';
export { cgroupLimits, updateLimits, cpuSharesToWeight } from './resources.ts';
export type { CgroupFile, CgroupLimit, LimitResources } from './resources.ts';
