/**
 * Kata's create rules applied to one request (kata-create-spec.md §1–§7), turning it into a
 * CreatePlan: pure data the machines sequence. File reads only (bundle, config.json, TOML); every
 * side effect is a step of the plan, run by a worker.
 */
import { join, isAbsolute } from 'node:path';
import { err } from '../errors.ts';
import type { ContainerType, CreatePlan, CreateTaskRequest, Step } from '../domain/task.ts';
import {
  applyAnnotations,
  calculateContainerSizing,
  calculateSandboxSizing,
  containerType,
  decideRootfs,
  envForProcess,
  isBlockDevice,
  isTmpfsMountPoint,
  cachedRuntimeConfig,
  readSpec,
  resolveConfigPath,
  sandboxIdOf,
  setEphemeralStorageType,
  validBundle,
  verifyContainerId,
  type OciSpec,
} from '../kata/index.ts';
import { networkSteps } from './create-network.ts';
import { bootArgsOf, withPoolClaim } from './create-pool.ts';
import { containerSetup } from './create-setup.ts';
import { paths, type Settings } from './settings.ts';

export interface Classified {
  type: ContainerType;
  sandboxId: string;
}
export interface Validated extends Classified {
  bundle: string;
  spec: OciSpec;
}
/** What a pod container's create needs of its sandbox. */
export interface SandboxContext {
  pid: number;
  plan: CreatePlan;
}

export interface CreateRules {
  checkId(id: string): void;
  /** Container type and sandbox id, from config.json's annotations (to route the request). */
  classify(req: CreateTaskRequest): Promise<Classified>;
  validate(req: CreateTaskRequest): Promise<Validated>;
  configure(req: CreateTaskRequest, validated: unknown, sandbox?: SandboxContext): Promise<CreatePlan>;
}

export function createRules(s: Settings): CreateRules {
  // Corral talks to its guest agent over virtio-serial, not vsock: /dev/vhost-vsock is not required.
  const loadConfig = cachedRuntimeConfig({ requireVsock: false });
  const validate = async (req: CreateTaskRequest): Promise<Validated> => {
    verifyContainerId(req.id);
    const bundle = await validBundle(req.id, req.bundle, s.bundleRoots);
    const spec = await readSpec(bundle);
    const type = containerType(spec.annotations);
    return { type, sandboxId: type === 'pod_container' ? sandboxIdOf(spec.annotations) : req.id, bundle, spec };
  };

  // A create is classified (Task API) just before its task's validate effect runs on the same request object:
  // that effect takes the classification's result once instead of reading the bundle again. A request
  // from the log (recovery, replay) is not in here, nor one validated already: those are read afresh.
  const classified = new WeakMap<CreateTaskRequest, Validated>();
  return {
    checkId: (id) => {
      verifyContainerId(id);
    },
    classify: async (req) => {
      const v = await validate(req);
      classified.set(req, v);
      return { type: v.type, sandboxId: v.sandboxId };
    },
    validate: async (req) => {
      const v = classified.get(req);
      if (!v) return validate(req);
      classified.delete(req);
      return v;
    },
    async configure(req, validatedRaw, sandbox) {
      const v = validatedRaw as Validated;
      const { spec } = v;
      const rootSource = isAbsolute(spec.root.path) ? spec.root.path : join(v.bundle, spec.root.path);
      const proc = spec.process;
      const process = {
        args: [...proc.args],
        env: envForProcess(proc.env).map((e) => `${e.name}=${e.value}`),
        cwd: proc.cwd || '/',
        uid: proc.user.uid,
        gid: proc.user.gid,
        additionalGids: [...proc.user.additionalGids],
        terminal: req.terminal,
      };
      if (process.args.length === 0) throw err.invalid('config.json: process.args must not be empty');

      if (v.type === 'pod_container') {
        if (!sandbox) throw err.precondition(`BUG: Cannot start the container, since the sandbox hasn't been created`);
        // Kata: a pod container uses the config its sandbox was created with; its own config_path is ignored.
        const cfg = sandbox.plan.config!;
        const mounts = await setEphemeralStorageType(spec.mounts, cfg.disableGuestEmptyDir, isTmpfsMountPoint);
        const cs = await containerSetup(s, spec, mounts, v.sandboxId, req.id);
        const steps = [
          ...(await rootfsSteps(req, v.bundle, cfg.disableBlockDeviceUse)),
          bindStep(rootSource, v.sandboxId, req.id),
          ...cs.steps,
        ];
        return {
          type: v.type,
          sandboxId: v.sandboxId,
          bundle: v.bundle,
          steps,
          process,
          setup: { ...cs.setup, ...(req.stdin ? { stdin: true } : {}) },
          hostPid: sandbox.pid,
          config: cfg,
        };
      }

      const resolved = await resolveConfigPath({
        annotations: spec.annotations,
        configPath: req.options.configPath,
        env: s.confFileEnv,
        allowedConfigDirs: s.configRoots,
        defaultPaths: s.defaultConfigPaths,
      });
      const base = await loadConfig(resolved.path);
      const rc = await applyAnnotations(base, spec.annotations);
      const hv = rc.hypervisor;
      if (hv.sharedFs !== 'virtio-9p' && hv.sharedFs !== 'virtio-fs')
        throw err.invalid(
          `shared_fs = "${hv.sharedFs}" is not supported: Corral shares the rootfs over virtio-9p or virtio-fs ` +
            `(set shared_fs = "virtio-9p" or "virtio-fs" in ${rc.configPath})`,
        );
      if (hv.sharedFs === 'virtio-fs' && hv.virtioFsCacheSize !== 0)
        throw err.invalid(
          `virtio_fs_cache_size = ${hv.virtioFsCacheSize} is not supported: Corral's QEMU has no virtio-fs DAX ` +
            `window (set it to 0 in ${rc.configPath})`,
        );
      if (!hv.initrd)
        throw err.invalid(
          `Corral boots an initrd: set initrd in [hypervisor.qemu] of ${rc.configPath} (image is not supported)`,
        );
      const workload = v.type === 'pod_sandbox' ? calculateSandboxSizing(spec) : calculateContainerSizing(spec);
      const statik = rc.runtime.staticSandboxResourceMgmt;
      const vcpus = hv.defaultVcpus + (statik ? workload.vcpus : 0);
      const memoryMiB = hv.defaultMemory + (statik ? workload.memMiB : 0);
      const sid = req.id;
      // Kata never rewrites a sandbox's emptyDirs (§1.6): its mounts are taken as they are.
      const cs = await containerSetup(s, spec, spec.mounts, sid, req.id);
      const steps: Step[] = [
        ...(await rootfsSteps(req, v.bundle, hv.disableBlockDeviceUse)),
        { phase: 'mounting', kind: 'mkdir', args: { path: paths.sandboxDir(s, sid), mode: 0o755 } },
        bindStep(rootSource, sid, req.id),
        ...cs.steps,
        ...(hv.rootless ? [{ phase: 'preparingUser', kind: 'createUser', args: { sandboxId: sid } } as Step] : []),
        ...(await networkSteps(s.node, sid, spec, rc.runtime)),
        { phase: 'booting', kind: 'boot', args: bootArgsOf(s, rc, sid, vcpus, memoryMiB) },
      ];
      return {
        type: v.type,
        sandboxId: sid,
        bundle: v.bundle,
        steps: withPoolClaim(steps, rc.factory.vmCacheNumber),
        process,
        vcpus,
        memoryMiB,
        setup: { ...cs.setup, ...(req.stdin ? { stdin: true } : {}) },
        config: {
          path: rc.configPath,
          source: resolved.source,
          disableBlockDeviceUse: hv.disableBlockDeviceUse,
          disableGuestEmptyDir: rc.runtime.disableGuestEmptyDir,
          rootless: hv.rootless,
        },
      };
    },
  };

  /** The root is shared writable: a read-only root is the guest's to make, after its mounts (`rootReadonly`). */
  function bindStep(source: string, sid: string, cid: string): Step {
    return {
      phase: 'mounting',
      kind: 'bind',
      args: { source, target: paths.sharedRootfs(s, sid, cid), readonly: false },
    };
  }
}

/**
 * Kata §6: mount the request's rootfs entries onto `<bundle>/rootfs` (the raw, unresolved bundle path).
 * `bundle`: the validated bundle, symlinks resolved (a bundle may be a symlink; the mount worker refuses
 * paths through one).
 */
async function rootfsSteps(req: CreateTaskRequest, bundle: string, disableBlockDeviceUse: boolean): Promise<Step[]> {
  const d = await decideRootfs(req.rootfs, { disableBlockDeviceUse, isBlockDevice });
  switch (d.action) {
    case 'none':
      return [];
    case 'mount':
      return [
        {
          phase: 'mounting',
          kind: 'mountRootfs',
          args: {
            target: join(bundle, 'rootfs'),
            mounts: d.mounts.map((m) => ({ type: m.type, source: m.source, options: [...m.options] })),
          },
        },
      ];
    case 'block':
      throw err.notImplemented(
        `rootfs ${d.mounts[0]?.source} is a block device: Corral shares rootfs over virtio-9p; ` +
          'set disable_block_device_use = true to mount it on the host',
      );
    case 'nydus':
      throw err.notImplemented('nydus rootfs (fuse.nydus-overlayfs) is not supported');
  }
}
