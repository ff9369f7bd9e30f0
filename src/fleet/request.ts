/**
 * The fleet create request (`corral.v1.fleet.task.create`): containerd's CreateTaskRequest with the
 * OCI spec inline instead of a bundle path (a bundle directory exists only on the machine that wrote
 * it), plus placement fields. Validation and sizing use the same rules as a node's create: the spec
 * goes through `parseSpec`, the id through Kata's id rule, the size through Kata's sizing formulas.
 */
import { err } from '../errors.ts';
import { parseCreate } from '../bus/task-requests.ts';
import { calculateContainerSizing, calculateSandboxSizing, type Sizing } from '../kata/sizing.ts';
import { containerType, sandboxIdOf, type ContainerType } from '../kata/container-type.ts';
import { parseSpec } from '../kata/oci.ts';
import { verifyContainerId } from '../kata/ids.ts';
import { HYPERVISOR_PREFIX } from '../kata/config-annotations.ts';
import { MIN_MEMORY_MIB } from '../kata/config-types.ts';
import { parseUint } from '../kata/strconv.ts';
import type { MountSpec } from '../domain/ops.ts';
import type { Demand } from './capacity.ts';
import { POLICIES, type Policy } from './placement.ts';

/** Kata's `default_vcpus` / `default_memory` when neither the request nor an annotation says otherwise. */
export const DEFAULT_VM: Readonly<Demand> = Object.freeze({ vcpus: 1, memoryMiB: 2048 });

export interface FleetCreateRequest {
  id: string;
  /** The OCI runtime spec (config.json) as a map. */
  spec: Record<string, unknown>;
  /** Mounted in order onto `<bundle>/rootfs` on the chosen node; sources must be valid there. */
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  options: { configPath?: string };
  /** Node labels required (all equal). */
  labels: Record<string, string>;
  /** Default: the controller's. */
  policy?: Policy;
  /** The VM's base size (Kata's default_vcpus / default_memory); the workload's size is added. */
  vm?: Partial<Demand>;
  /** Idempotency key: a repeat joins the first request (see docs/api.md, "Repeating a request"). */
  requestId?: string;
}

export interface SizedRequest {
  request: FleetCreateRequest;
  containerType: ContainerType;
  /** The sandbox it belongs to: its own id, or (pod container) the annotation's. */
  sandboxId: string;
  /** Base VM size after request and annotation overrides. */
  base: Demand;
  /** Kata's workload sizing of the spec. */
  workload: Sizing;
  /** What the node must have free: base + workload (0 for a pod container: it joins its sandbox's VM). */
  demand: Demand;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);

function stringMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw err.invalid(`${what} must be a map of strings`);
  for (const [k, x] of Object.entries(v))
    if (typeof x !== 'string' || !k) throw err.invalid(`${what}.${k} must be a string`);
  return v as Record<string, string>;
}

function positiveInt(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffff_ffff)
    throw err.invalid(`${what} must be a positive integer`);
  return v;
}

/**
 * Check a fleet create body.
 * @throws InvalidArgument naming the field: `spec` missing or not a map, `bundle` given, bad
 *   `labels`, `policy`, `vm`, and whatever the node's create parser refuses.
 */
export function parseFleetCreate(body: unknown): FleetCreateRequest {
  const base = parseCreate(body);
  const o = body as Obj;
  verifyContainerId(base.id);
  if (base.bundle)
    throw err.invalid(
      'bundle must not be set in a fleet create: the OCI spec travels inline in spec, ' +
        'and the chosen node writes the bundle',
    );
  if (!isObj(o.spec)) throw err.invalid('spec (the OCI config.json as a map) is required');
  const policy = o.policy;
  if (policy !== undefined && policy !== null && !POLICIES.includes(policy as Policy))
    throw err.invalid(`policy must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(policy)}`);
  let vm: Partial<Demand> | undefined;
  if (o.vm !== undefined && o.vm !== null) {
    if (!isObj(o.vm)) throw err.invalid('vm must be a map {vcpus?, memoryMiB?}');
    const vcpus = positiveInt(o.vm.vcpus, 'vm.vcpus');
    const memoryMiB = positiveInt(o.vm.memoryMiB, 'vm.memoryMiB');
    if (memoryMiB !== undefined && memoryMiB < MIN_MEMORY_MIB)
      throw err.invalid(`vm.memoryMiB ${memoryMiB} is less than the minimum ${MIN_MEMORY_MIB}`);
    vm = { ...(vcpus !== undefined ? { vcpus } : {}), ...(memoryMiB !== undefined ? { memoryMiB } : {}) };
  }
  const requestId = o.requestId;
  if (
    requestId !== undefined &&
    requestId !== null &&
    (typeof requestId !== 'string' || requestId.length === 0 || requestId.length > 128)
  )
    throw err.invalid('requestId must be a string of 1 to 128 characters');
  const { bundle: _b, checkpoint: _c, parentCheckpoint: _p, ...rest } = base;
  return {
    ...rest,
    spec: o.spec,
    labels: stringMap(o.labels, 'labels'),
    ...(policy ? { policy: policy as Policy } : {}),
    ...(vm ? { vm } : {}),
    ...(requestId ? { requestId: requestId } : {}),
  };
}

/** Kata's annotation overrides of the base size, with Kata's error texts (gating is the node's to check). */
function annotationBase(a: Readonly<Record<string, string>>): Partial<Demand> {
  const out: Partial<Demand> = {};
  const uint = (k: string) => {
    if (!Object.hasOwn(a, k)) return undefined;
    const n = parseUint(a[k]!);
    if (n === undefined) throw err.invalid(`Error parsing annotation for ${k}: Please specify positive numeric value`);
    if (n > 0xffff_ffffn)
      throw err.invalid(`Error parsing annotation for ${k}: The number exceeds the maximum allowed for its type`);
    return Number(n);
  };
  const vcpus = uint(`${HYPERVISOR_PREFIX}default_vcpus`);
  const mem = uint(`${HYPERVISOR_PREFIX}default_memory`);
  if (mem !== undefined && mem < MIN_MEMORY_MIB) {
    throw err.invalid(
      `Memory specified in annotation ${HYPERVISOR_PREFIX}default_memory is less than minimum required ` +
        `${MIN_MEMORY_MIB}, please specify a larger value`,
    );
  }
  if (vcpus) out.vcpus = vcpus;
  if (mem !== undefined) out.memoryMiB = mem;
  return out;
}

/**
 * Validate the inline spec (the same `parseSpec` a node's create runs on config.json) and size the
 * sandbox: base = request `vm` > annotations `io.katacontainers.config.hypervisor.default_vcpus` /
 * `default_memory` > {@link DEFAULT_VM}; workload = `calculateSandboxSizing` (pod sandbox, from the
 * CRI sandbox annotations) or `calculateContainerSizing` (single container, from
 * `linux.resources`); demand = base + workload, what the VM holds under
 * `static_sandbox_resource_mgmt` and what it grows to by hotplug otherwise.
 * @throws InvalidArgument with parseSpec's and Kata's texts.
 */
export function sizeFleetCreate(request: FleetCreateRequest): SizedRequest {
  const spec = parseSpec(JSON.stringify(request.spec));
  const type = containerType(spec.annotations);
  if (type === 'pod_container') {
    return {
      request,
      containerType: type,
      sandboxId: sandboxIdOf(spec.annotations),
      base: { vcpus: 0, memoryMiB: 0 },
      workload: { vcpus: 0, memMiB: 0 },
      demand: { vcpus: 0, memoryMiB: 0 },
    };
  }
  const ann = annotationBase(spec.annotations);
  const base: Demand = {
    vcpus: request.vm?.vcpus ?? ann.vcpus ?? DEFAULT_VM.vcpus,
    memoryMiB: request.vm?.memoryMiB ?? ann.memoryMiB ?? DEFAULT_VM.memoryMiB,
  };
  const workload = type === 'pod_sandbox' ? calculateSandboxSizing(spec) : calculateContainerSizing(spec);
  return {
    request,
    containerType: type,
    sandboxId: request.id,
    base,
    workload,
    demand: { vcpus: base.vcpus + workload.vcpus, memoryMiB: base.memoryMiB + workload.memMiB },
  };
}
