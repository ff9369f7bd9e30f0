/**
 * Loading a Kata-compatible configuration.toml (kata-create-spec.md §3.2, §3.3): TOML, `config.d/`
 * drop-ins, the `[hypervisor.qemu]` conversion with its compiled defaults, `[agent.*]`, `[factory]`,
 * `[runtime]`, kernel parameters, then the checks. The result is a deep-frozen {@link RuntimeConfig}.
 */
import * as path from 'node:path';
import { err } from '../errors.ts';
import {
  checkFactory,
  checkHypervisorAssets,
  checkNetNs,
  checkPcie,
  validateHypervisorConfig,
} from './config-check.ts';
import { decodeNamed, decodeTable, mergeInto, parseToml, withDefaults } from './config-decode.ts';
import {
  AGENT_KEYS,
  BLOCK_DEVICE_AIO,
  BLOCK_DEVICE_DRIVERS,
  DEFAULT_MEMORY_MIB,
  EXPERIMENTAL_FEATURES,
  EXTRA_MONITOR_SOCKETS,
  FACTORY_DEFAULTS,
  FACTORY_KEYS,
  HYPERVISOR_DEFAULTS,
  HYPERVISOR_KEYS,
  HYPERVISOR_NAMES,
  MAX_PCI_BRIDGES,
  MIN_MEMORY_MIB,
  NETWORK_MODELS,
  PCIE_PORTS,
  RUNTIME_KEYS,
  SHARED_FS,
  VFIO_MODES,
  type AgentConfig,
  type FactoryConfig,
  type HypervisorConfig,
  type NetworkModel,
  type Raw,
  type RuntimeConfig,
  type RuntimeSettings,
  type VfioMode,
} from './config-types.ts';
import { type KataFs, errnoOf, fsErrorText, nodeFs, resolvePath } from './fs.ts';
import { type HostInfo, hostInfo } from './host.ts';
import { buildKernelParams, parseKernelParams } from './kernel-params.ts';
import { deepFreeze, goList, prefixed } from './util.ts';

export interface LoadOptions {
  /** @default nodeFs */
  readonly fs?: KataFs;
  /** @default hostInfo() */
  readonly host?: HostInfo;
  /** Require `/dev/vhost-vsock`, as Kata's qemu conversion does. @default true */
  readonly requireVsock?: boolean;
}

type Doc = {
  hypervisor: Record<string, Raw<typeof HYPERVISOR_KEYS>>;
  agent: Record<string, Raw<typeof AGENT_KEYS>>;
  runtime: Raw<typeof RUNTIME_KEYS>;
  factory: Raw<typeof FACTORY_KEYS>;
};
const TOP_LEVEL = ['hypervisor', 'agent', 'runtime', 'factory', 'image'];

/** One file's tables, type-checked; errors start with `errPrefix: `, warnings with the file. */
function decodeFile(text: string, file: string, errPrefix: string, warnings: string[]): Doc {
  const w: string[] = [];
  try {
    const doc = parseToml(text);
    for (const k of Object.keys(doc)) if (!TOP_LEVEL.includes(k)) w.push(`unknown configuration key ${k} ignored`);
    return {
      hypervisor: decodeNamed(HYPERVISOR_KEYS, doc.hypervisor, 'hypervisor', w),
      agent: decodeNamed(AGENT_KEYS, doc.agent, 'agent', w),
      runtime: decodeTable(RUNTIME_KEYS, doc.runtime, 'runtime', w),
      factory: decodeTable(FACTORY_KEYS, doc.factory, 'factory', w),
    };
  } catch (e) {
    throw prefixed(errPrefix, e);
  } finally {
    warnings.push(...w.map((m) => `${file}: ${m}`));
  }
}

async function readConfigFile(fs: KataFs, file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const msg = `${what}${fsErrorText('open', file, e)}`;
    throw errnoOf(e) === 'ENOENT' ? err.notFound(msg, e) : err.invalid(msg, e);
  }
}

/** `<dir of file>/config.d/*`, every entry, in lexical order; a missing directory means none. */
async function dropIns(fs: KataFs, file: string): Promise<string[]> {
  const dir = path.join(path.dirname(file), 'config.d');
  try {
    return (await fs.readdir(dir)).sort().map((n) => path.join(dir, n));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw err.invalid(`error reading ${JSON.stringify(dir)} directory: ${fsErrorText('open', dir, e)}`, e);
  }
}

const oneOf = <T extends string>(allowed: readonly T[], v: string): v is T =>
  (allowed as readonly string[]).includes(v);
const commaList = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .join(',');

/** `newQemuHypervisorConfig`: paths resolved (they must exist), values checked, defaults applied. */
async function qemuConfig(
  raw: Raw<typeof HYPERVISOR_KEYS>,
  fs: KataFs,
  host: HostInfo,
  requireVsock: boolean,
): Promise<HypervisorConfig> {
  const h = withDefaults(HYPERVISOR_KEYS, raw, HYPERVISOR_DEFAULTS) as unknown as Omit<
    HypervisorConfig,
    'kernelParams'
  >;
  const opt = (p: string) => (p === '' ? Promise.resolve('') : resolvePath(fs, p));
  const resolved = {
    path: await resolvePath(fs, h.path),
    kernel: await resolvePath(fs, h.kernel),
    initrd: await opt(h.initrd),
    image: await opt(h.image),
    pflashes: await Promise.all(
      h.pflashes.map((p) =>
        resolvePath(fs, p).catch((e: unknown) => {
          throw prefixed(`failed to resolve path: ${p}`, e);
        }),
      ),
    ),
    firmware: await opt(h.firmware),
    firmwareVolume: await opt(h.firmwareVolume),
  };
  const check = (ok: boolean, msg: string) => {
    if (!ok) throw err.invalid(msg);
  };
  check(
    oneOf(BLOCK_DEVICE_DRIVERS, h.blockDeviceDriver),
    `Invalid hypervisor block storage driver ${h.blockDeviceDriver} specified (supported drivers: ${goList(BLOCK_DEVICE_DRIVERS)})`,
  );
  check(
    oneOf(BLOCK_DEVICE_AIO, h.blockDeviceAio),
    `Invalid hypervisor block storage I/O mechanism ${h.blockDeviceAio} specified (supported AIO: ${goList(BLOCK_DEVICE_AIO)})`,
  );
  check(
    oneOf(SHARED_FS, h.sharedFs),
    `Invalid hypervisor shared file system ${h.sharedFs} specified (supported file systems: ${goList(SHARED_FS)})`,
  );
  check(
    !h.sharedFs.startsWith('virtio-fs') || h.virtioFsDaemon !== '',
    `cannot enable ${h.sharedFs} without daemon path in configuration file`,
  );
  if (requireVsock && !(await fs.exists('/dev/vhost-vsock'))) {
    throw err.precondition("host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory");
  }
  check(
    h.extraMonitorSocket === '' || oneOf(EXTRA_MONITOR_SOCKETS, h.extraMonitorSocket),
    `Invalid hypervisor extra monitor socket ${h.extraMonitorSocket} specified (supported values: ${goList(EXTRA_MONITOR_SOCKETS)})`,
  );
  for (const [k, v] of [
    ['hot_plug_vfio', h.hotPlugVfio],
    ['cold_plug_vfio', h.coldPlugVfio],
  ] as const) {
    check(oneOf(PCIE_PORTS, v), `invalid ${k} value ${JSON.stringify(v)} (allowed: ${PCIE_PORTS.join(', ')})`);
  }
  for (const re of h.enableAnnotations) {
    try {
      new RegExp(re);
    } catch {
      throw err.invalid(`enable_annotations entry ${JSON.stringify(re)} is not a valid regular expression`);
    }
  }
  const cpus = Math.min(host.cpus, host.maxVcpus);
  const v = h.defaultVcpus;
  const reqMax = h.defaultMaxvcpus === 0 || h.defaultMaxvcpus >= host.cpus ? host.cpus : h.defaultMaxvcpus;
  return {
    ...h,
    ...resolved,
    machineAccelerators: commaList(h.machineAccelerators),
    cpuFeatures: commaList(h.cpuFeatures),
    disableImageNvdimm:
      h.disableImageNvdimm ||
      h.machineType === 'microvm' ||
      (host.arch === 'arm64' && resolved.firmware === '' && resolved.pflashes.length === 0),
    defaultVcpus: v < 0 || v > cpus ? cpus : v === 0 ? 1 : v,
    defaultMaxvcpus: Math.min(reqMax, host.maxVcpus),
    defaultMemory: h.defaultMemory < MIN_MEMORY_MIB ? DEFAULT_MEMORY_MIB : h.defaultMemory,
    defaultMaxmemory: h.defaultMaxmemory === 0 || h.defaultMaxmemory > host.memMiB ? host.memMiB : h.defaultMaxmemory,
    defaultBridges: Math.min(h.defaultBridges, MAX_PCI_BRIDGES),
    kernelParams: [],
  };
}

function agentConfig(file: string, tables: Doc['agent']): AgentConfig {
  const names = Object.keys(tables).sort();
  if (names.length > 1) {
    throw err.invalid(
      `${file}: configuration file contains several agent sections (${names.map((n) => JSON.stringify(n)).join(', ')}); at most one is allowed`,
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

/** The `[hypervisor.*]` section to use: exactly one, and it must be `qemu`. */
function hypervisorTable(tables: Doc['hypervisor']): Raw<typeof HYPERVISOR_KEYS> {
  const names = Object.keys(tables).sort();
  const invalid = names.find((n) => !oneOf(HYPERVISOR_NAMES, n));
  const fail = (m: string) => err.invalid(m);
  if (invalid !== undefined)
    throw fail(`configuration file contains invalid hypervisor section: ${JSON.stringify(invalid)}`);
  if (names.length === 0)
    throw fail('configuration file contains no hypervisor section; Corral needs [hypervisor.qemu]');
  if (names.length > 1) {
    throw fail(
      `configuration file contains several hypervisor sections (${names.map((n) => JSON.stringify(n)).join(', ')}); exactly one is allowed`,
    );
  }
  if (names[0] !== 'qemu')
    throw fail(`hypervisor ${JSON.stringify(names[0])} is not supported by Corral (only "qemu")`);
  return tables.qemu ?? {};
}

/** `internetworking_model` and `vfio_mode`: checked only when non-empty, as Kata does. */
function networkAndVfio(r: Raw<typeof RUNTIME_KEYS>): { internetworkingModel: NetworkModel; vfioMode: VfioMode } {
  const model = r.internetworking_model || 'default';
  if (!oneOf(NETWORK_MODELS, model)) throw err.invalid(`Unknown type ${model}`);
  const vfio = r.vfio_mode || 'guest-kernel';
  if (!oneOf(VFIO_MODES, vfio)) throw err.invalid(`Unknown VFIO mode ${vfio}`);
  return { internetworkingModel: model === 'default' ? 'tcfilter' : model, vfioMode: vfio };
}

/**
 * `sandbox_bind_mounts`: each must resolve, and base names must be unique.
 * @throws `sandbox-bindmounts: Failed to resolve path: <m>: <err>` (the resolve error's code),
 *   InvalidArgument `sandbox-bindmounts: File <p> has base that matches already specified bindmount`.
 */
export async function validateBindMounts(fs: KataFs, mounts: readonly string[]): Promise<void> {
  const bases = new Set<string>();
  for (const m of mounts) {
    const real = await resolvePath(fs, m).catch((e: unknown) => {
      throw prefixed(`sandbox-bindmounts: Failed to resolve path: ${m}`, e);
    });
    const base = path.basename(real);
    if (bases.has(base))
      throw err.invalid(`sandbox-bindmounts: File ${real} has base that matches already specified bindmount`);
    bases.add(base);
  }
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
  const doc = decodeFile(await readConfigFile(fs, configPath, ''), configPath, configPath, warnings);
  for (const file of await dropIns(fs, configPath)) {
    const text = await readConfigFile(fs, file, `error reading file ${JSON.stringify(file)}: `);
    mergeInto(doc, decodeFile(text, file, `error decoding file ${JSON.stringify(file)}`, warnings));
  }

  const { internetworkingModel, vfioMode } = networkAndVfio(doc.runtime);
  let hv: HypervisorConfig;
  try {
    hv = await qemuConfig(hypervisorTable(doc.hypervisor), fs, host, opts.requireVsock ?? true);
  } catch (e) {
    throw prefixed(configPath, e);
  }
  const agent = agentConfig(configPath, doc.agent);
  const factory = withDefaults(FACTORY_KEYS, doc.factory, FACTORY_DEFAULTS) as unknown as FactoryConfig;
  hv = {
    ...hv,
    kernelParams: buildKernelParams({
      usesImage: hv.image !== '',
      blockDeviceDriver: hv.blockDeviceDriver,
      agent,
      user: parseKernelParams(doc.hypervisor.qemu?.kernel_params ?? ''),
    }),
  };

  const runtime = {
    ...(withDefaults(RUNTIME_KEYS, doc.runtime, {}) as unknown as RuntimeSettings),
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
