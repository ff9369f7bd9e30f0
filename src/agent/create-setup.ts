/**
 * A container's mounts, limits, hostname and read-only root from its config.json (issue 8, items 5 and 6):
 * the host steps that share its bind sources into the sandbox's share (mount-worker `bind` and `mkdir` steps,
 * undone by their compensations on rollback and teardown), and the `ContainerSetup` the guest applies.
 */
import { basename, dirname } from 'node:path';
import { err } from '../errors.ts';
import type { CreatePlan, Step } from '../domain/task.ts';
import { cgroupLimits, planMounts, resolveBindSources, type OciMount, type OciSpec } from '../kata/index.ts';
import { paths, type Settings } from './settings.ts';

/** Where the guest mounts the sandbox's share (infra/guest/init). */
export const GUEST_SHARED = '/run/corral/shared';
/** sethostname(2)'s limit. */
const HOST_NAME_MAX = 64;

export interface ContainerSetupPlan {
  /** Host steps, after the rootfs bind (their targets lie beside it in the share). */
  steps: Step[];
  setup: NonNullable<CreatePlan['setup']>;
}

/**
 * `mounts`: config.json's mounts (for a pod container after Kata's emptyDir rewrite).
 * @throws InvalidArgument naming the mount or field that cannot work; NotFound for a missing bind source.
 */
export async function containerSetup(
  s: Settings,
  spec: OciSpec,
  mounts: readonly OciMount[],
  sid: string,
  cid: string,
): Promise<ContainerSetupPlan> {
  // The container's dir in the share, as the rootfs bind names it (and the guest sees it).
  const hostDir = dirname(paths.sharedRootfs(s, sid, cid));
  const sources = await resolveBindSources(mounts, s.bundleRoots);
  const plan = planMounts(mounts, { hostDir, guestDir: `${GUEST_SHARED}/${basename(hostDir)}`, sources });
  const steps = plan.host.map((h): Step =>
    h.kind === 'bind'
      ? { phase: 'mounting', kind: 'bind', args: { source: h.source, target: h.target, readonly: h.readonly } }
      : { phase: 'mounting', kind: 'mkdir', args: { path: h.path, mode: h.mode } },
  );
  const limits = cgroupLimits(spec.linux.resources);
  if (Buffer.byteLength(spec.hostname) > HOST_NAME_MAX)
    throw err.invalid(`config.json: hostname must be at most ${HOST_NAME_MAX} bytes, got ${spec.hostname.length}`);
  return {
    steps,
    setup: {
      ...(plan.guest.length > 0 ? { mounts: plan.guest } : {}),
      ...(limits.length > 0 ? { limits } : {}),
      ...(spec.hostname ? { hostname: spec.hostname } : {}),
      ...(spec.root.readonly ? { rootReadonly: true } : {}),
    },
  };
}
