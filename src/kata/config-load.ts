/**
 * Loading a Kata-compatible configuration.toml (kata-create-spec.md §3.2, §3.3): the file and its
 * `config.d/` drop-ins (config-files.ts), the `[hypervisor.qemu]` conversion with its compiled defaults
 * (config-qemu.ts), `[agent.*]`, `[factory]`, `[runtime]` (config-runtime.ts), kernel parameters, then
 * the checks (config-check.ts). The result is a deep-frozen {@link RuntimeConfig}.
 */
import { err } from '../errors.ts';
import {
  checkFactory,
  checkHypervisorAssets,
  checkNetNs,
  checkPcie,
  validateHypervisorConfig,
} from './config-check.ts';
import { withDefaults } from './config-decode.ts';
import { readConfigDoc, type Doc } from './config-files.ts';
import { hypervisorTable, qemuConfig } from './config-qemu.ts';
import { networkAndVfio, validateBindMounts } from './config-runtime.ts';
import {
  EXPERIMENTAL_FEATURES,
  FACTORY_DEFAULTS,
  FACTORY_KEYS,
  RUNTIME_KEYS,
  type AgentConfig,
  type FactoryConfig,
  type HypervisorConfig,
  type RuntimeConfig,
  type RuntimeSettings,
} from './config-types.ts';
import { type KataFs, nodeFs } from './fs.ts';
import { type HostInfo, hostInfo } from './host.ts';
import { buildKernelParams, parseKernelParams } from './kernel-params.ts';
import { deepFreeze, prefixed } from './util.ts';

export { validateBindMounts } from './config-runtime.ts';

export interface LoadOptions {
  /** @default nodeFs */
  readonly fs?: KataFs;
  /** @default hostInfo() */
  readonly host?: HostInfo;
  /** Require `/dev/vhost-vsock`, as Kata's qemu conversion does. @default true */
  readonly requireVsock?: boolean;
}

function agentConfig(file: string, tables: Doc['agent']): AgentConfig {
  const names = Object.keys(tables).sort();
  if (names.length > 1) {
    throw err.invalid(
      `${file}: configuration file contains several agent sections ` +
        `(${names.map((n) => JSON.stringify(n)).join(', ')}); at most one is allowed`,
    );
  }
  const a = names[0] === undefined ? undefined : tables[names[0]];
  return {
    longLiveConn: a !== undefined,
    debug: a?.enable_debug ?? false,
    trace: a?.enable_tracing ?? false,
    kernelModules: a?.kernel_modules ?? [],
    enableDebugConsole: a?.debug_console_enabled ?? false,
    dialTimeout: a?.dial_timeout ?? 0,
    containerPipeSize: 0,
  };
}

/**
 * Load, merge, convert and check the configuration at `configPath` (as returned by
 * `resolveConfigPath`). Drop-ins from `<dir>/config.d/` are merged key by key in lexical order.
 * Corral differs from Kata 3.2.0 in: exactly one `[hypervisor.*]` table, which must be `qemu`; at
 * most one `[agent.*]` table; `vfio_mode` defaults to `guest-kernel`; image/initrd exclusivity and
 * the other VC-level checks run at load time.
 * @throws CorralError with Kata's messages (see kata-create-spec.md §3.2) or Corral's.
 */
export async function loadRuntimeConfig(configPath: string, opts: LoadOptions = {}): Promise<RuntimeConfig> {
  const fs = opts.fs ?? nodeFs;
  const host = opts.host ?? hostInfo();
  const warnings: string[] = [];
  const doc = await readConfigDoc(fs, configPath, warnings);

  const { internetworkingModel, vfioMode } = networkAndVfio(doc.runtime);
  let hv: HypervisorConfig;
  try {
    hv = await qemuConfig(hypervisorTable(doc.hypervisor), fs, host, opts.requireVsock ?? true);
  } catch (e) {
    throw prefixed(configPath, e);
  }
  const agent = agentConfig(configPath, doc.agent);
  const factory: FactoryConfig = withDefaults(FACTORY_KEYS, doc.factory, FACTORY_DEFAULTS);
  hv = {
    ...hv,
    kernelParams: buildKernelParams({
      usesImage: hv.image !== '',
      blockDeviceDriver: hv.blockDeviceDriver,
      agent,
      user: parseKernelParams(doc.hypervisor.qemu?.kernel_params ?? ''),
    }),
  };

  const runtime: RuntimeSettings = {
    ...withDefaults(RUNTIME_KEYS, doc.runtime, {}),
    internetworkingModel,
    vfioMode,
  };
  const unknownFeature = runtime.experimental.find((f) => !EXPERIMENTAL_FEATURES.includes(f));
  if (unknownFeature !== undefined)
    throw err.invalid(`Unsupported experimental feature ${JSON.stringify(unknownFeature)}`);
  await validateBindMounts(fs, runtime.sandboxBindMounts);

  checkNetNs(runtime);
  warnings.push(...(await checkHypervisorAssets(hv, fs)));
  checkFactory(factory, hv, 'qemu');
  checkPcie(hv);
  hv = validateHypervisorConfig(hv, host.maxVcpus);
  return deepFreeze({ configPath, hypervisorType: 'qemu', hypervisor: hv, agent, factory, runtime, warnings });
}
