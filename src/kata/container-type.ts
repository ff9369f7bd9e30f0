/** Container type and sandbox id detection from annotations (kata-create-spec.md §2). */
import { err } from '../errors.ts';

/**
 * Kata's string forms. `pod_sandbox` and `single_container` create a VM; `pod_container` joins one.
 * Declared once, here, next to the rules that produce it: kata imports only errors.ts, so it cannot take
 * the type from domain; src/domain/task.ts re-exports it (a type-only import, nothing loads at run time).
 */
export type ContainerType = 'pod_sandbox' | 'pod_container' | 'single_container';

/** Checked in this order; the first key present decides (§2.1). */
export const CONTAINER_TYPE_KEYS = [
  'io.kubernetes.cri.container-type',
  'io.kubernetes.cri-o.ContainerType',
  'io.kubernetes.docker.type',
] as const;

/** Checked in this order; the first key present wins, even with an empty value (§2.4). */
export const SANDBOX_ID_KEYS = [
  'io.kubernetes.cri.sandbox-id',
  'io.kubernetes.cri-o.SandboxID',
  'io.kubernetes.sandbox.id',
] as const;

/** One table for every key (§2.2). */
const TYPE_VALUES: Readonly<Record<string, ContainerType>> = {
  sandbox: 'pod_sandbox',
  container: 'pod_container',
  podsandbox: 'pod_sandbox',
};

type Annotations = Readonly<Record<string, string>> | undefined;
const has = (a: Annotations, k: string): a is Readonly<Record<string, string>> =>
  a !== undefined && Object.hasOwn(a, k);

/**
 * The container type. No key present → `single_container` (ctr, docker, nerdctl without CRI).
 * @throws InvalidArgument `Unknown container type <value>` when the first present key has any other
 *   value, including the empty string, even if a later key holds a valid one.
 */
export function containerType(annotations: Annotations): ContainerType {
  for (const k of CONTAINER_TYPE_KEYS) {
    if (!has(annotations, k)) continue;
    const v = annotations[k] ?? '';
    const t = Object.hasOwn(TYPE_VALUES, v) ? TYPE_VALUES[v] : undefined;
    if (!t) throw err.invalid(`Unknown container type ${v}`);
    return t;
  }
  return 'single_container';
}

/** True for the types that own a VM (`IsSandbox`): `pod_sandbox` and `single_container`. */
export const isSandbox = (t: ContainerType): boolean => t !== 'pod_container';

/** True only for a CRI pod sandbox (`IsCriSandbox`). */
export const isCriSandbox = (t: ContainerType): boolean => t === 'pod_sandbox';

/** CRI-O detection (§2.6): its type key holds `sandbox` or `container`. */
export const isCrioContainerManager = (annotations: Annotations): boolean =>
  ['sandbox', 'container'].includes(annotations?.['io.kubernetes.cri-o.ContainerType'] ?? '');

/**
 * The sandbox id a pod container belongs to.
 * @throws InvalidArgument `Could not find sandbox ID` when none of {@link SANDBOX_ID_KEYS} is present.
 */
export function sandboxIdOf(annotations: Annotations): string {
  for (const k of SANDBOX_ID_KEYS) if (has(annotations, k)) return annotations[k] ?? '';
  throw err.invalid('Could not find sandbox ID');
}
