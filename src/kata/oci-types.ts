/** The OCI runtime spec types Corral reads (config.json); parsed by `parseSpec` in oci.ts. */

/** The five capability sets. Always present after parsing (empty when the spec had none). */
export interface OciCapabilities {
  readonly bounding: readonly string[];
  readonly effective: readonly string[];
  readonly inheritable: readonly string[];
  readonly permitted: readonly string[];
  readonly ambient: readonly string[];
}

export interface OciUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
}

export interface OciProcess {
  readonly terminal: boolean;
  readonly user: OciUser;
  readonly args: readonly string[];
  /** Raw `KEY=value` entries; see {@link envForProcess}. */
  readonly env: readonly string[];
  readonly cwd: string;
  readonly capabilities: OciCapabilities;
  readonly noNewPrivileges: boolean;
}

export interface OciRoot {
  /** Relative paths are relative to the bundle. */
  readonly path: string;
  readonly readonly: boolean;
}

export interface OciMount {
  readonly destination: string;
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

export interface OciResources {
  /**
   * Each field is present only if the spec had it; sizing needs to know (§4.2). Bytes for memory
   * (`swap` is memory+swap, -1 unlimited), µs for quota/period (quota -1 unlimited), `cpus` a CPU list.
   */
  readonly cpu?: {
    readonly quota?: number;
    readonly period?: number;
    readonly shares?: number;
    readonly cpus?: string;
    readonly mems?: string;
  };
  readonly memory?: { readonly limit?: number; readonly reservation?: number; readonly swap?: number };
  /** `limit` ≤ 0 is unlimited. */
  readonly pids?: { readonly limit?: number };
}

export interface OciNamespace {
  readonly type: string;
  readonly path: string;
}

export interface OciDevice {
  /** One of `c`, `b`, `u`, `p`. */
  readonly type: string;
  readonly path: string;
  readonly major: number;
  readonly minor: number;
  readonly fileMode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

export interface OciHook {
  readonly path: string;
  readonly args: readonly string[];
  readonly env: readonly string[];
  readonly timeout?: number;
}

export const HOOK_KINDS = [
  'prestart',
  'createRuntime',
  'createContainer',
  'startContainer',
  'poststart',
  'poststop',
] as const;
export type OciHooks = { readonly [K in (typeof HOOK_KINDS)[number]]: readonly OciHook[] };

export interface OciLinux {
  readonly resources: OciResources;
  readonly namespaces: readonly OciNamespace[];
  readonly devices: readonly OciDevice[];
}

/** A validated, deep-frozen OCI spec. `process`, `root`, `linux` and `linux.resources` are required. */
export interface OciSpec {
  readonly ociVersion: string;
  /** The container's hostname (its own UTS namespace in the guest); empty: the guest's. */
  readonly hostname: string;
  readonly process: OciProcess;
  readonly root: OciRoot;
  readonly mounts: readonly OciMount[];
  readonly annotations: Readonly<Record<string, string>>;
  readonly linux: OciLinux;
  readonly hooks: OciHooks;
}
