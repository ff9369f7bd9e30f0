/**
 * The network steps of a sandbox's create plan (Kata's SetupNetworkNamespace and createNetwork,
 * kata-create-spec.md §1.5 steps 5 and 8.2; docs/decisions/0011-networking.md):
 * - none with `disable_new_netns` or `internetworking_model = "none"` (the shipped default): the guest has
 *   loopback only;
 * - the namespace config.json names (`linux.namespaces` `{type: "network", path}`), checked not to be the
 *   host's; or, when it names none, one Corral makes for the sandbox (`createNetns`, removed with it);
 * - `setupNetwork` in it: the network worker plumbs each veth to a tap, as the model says.
 * They come after the VMM user (a rootless QEMU's taps are owned by it) and before boot (QEMU runs in the
 * namespace): rollback and teardown undo them after the VM is stopped.
 */
import { corralNetns } from '../domain/network.ts';
import type { Step } from '../domain/ops.ts';
import { decideNetns, type OciSpec, type RuntimeSettings } from '../kata/index.ts';

export async function networkSteps(
  node: string,
  sandboxId: string,
  spec: OciSpec,
  rt: RuntimeSettings,
): Promise<Step[]> {
  const d = await decideNetns(spec, rt);
  if (d.action === 'none') return [];
  const netns = d.action === 'use' ? d.path : corralNetns(node, sandboxId);
  return [
    ...(d.action === 'create' ? [{ phase: 'booting', kind: 'createNetns', args: { netns } } satisfies Step] : []),
    { phase: 'booting', kind: 'setupNetwork', args: { sandboxId, netns, model: d.model } },
  ];
}
