/**
 * What traces cost (issue 12): create→running (Task API create + start of `true`) on a node whose agent
 * and workers export their spans (OTLP/HTTP protobuf, to a receiver in this process:
 * test/helpers/otlp/receiver.ts), next to the same on a node with tracing off. On the traced side the
 * requests come from a root span of this process, as a traced CLI's do. Both nodes are up at once and
 * measured in turns (off, on, on, off, off, on, ...), so that drift over the run falls on both alike.
 *
 * Twice: with real QEMU guests (what a create costs; the boot dominates, so the ratio is within its
 * noise), and with simulated VMs (everything but the guest: NATS, agent, workers, mounts, JetStream), five
 * times as many runs, where the same overhead is a larger share.
 */
import { inSpan, startTracing, stopTracing } from '../src/util/trace.ts';
import { otlpReceiver, type OtlpReceiver } from '../test/helpers/otlp/receiver.ts';
import { testNode, type TestNode } from '../test/helpers/node.ts';
import type { Time } from './timing.ts';

async function pair(rx: OtlpReceiver, runs: number, time: Time, simulate: boolean) {
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url };
  const nodes: TestNode[] = [];
  try {
    nodes.push(await testNode({ simulate }));
    nodes.push(await testNode({ simulate, env: otel }));
    const [plain, traced] = nodes as [TestNode, TestNode];
    await startTracing('corral-bench', otel);
    const once = async (n: TestNode, id: string) => {
      await n.call('create', { id, bundle: n.bundle(id, { args: ['true'] }) });
      await n.call('start', { id });
    };
    const done = async (n: TestNode, id: string) => {
      await n.call('wait', { id });
      await n.call('delete', { id });
    };
    const off: number[] = [];
    const on: number[] = [];
    const offRun = async (i: number) => {
      off.push(...(await time(1, () => once(plain, `trace-off-${i}`))));
      await done(plain, `trace-off-${i}`);
    };
    const onRun = async (i: number) => {
      on.push(...(await time(1, () => inSpan('bench create→running', () => once(traced, `trace-on-${i}`)))));
      await done(traced, `trace-on-${i}`);
    };
    // Turns, in alternating order: neither side always runs right after the other's teardown.
    for (let i = 0; i < runs; i++) for (const run of i % 2 ? [onRun, offRun] : [offRun, onRun]) await run(i);
    return { off, on };
  } finally {
    await stopTracing();
    for (const n of nodes) await n.cleanup();
  }
}

export async function benchTracing(runs: number, time: Time) {
  const rx = await otlpReceiver();
  try {
    const vm = await pair(rx, runs, time, false);
    const sim = await pair(rx, runs * 5, time, true);
    return { off: vm.off, on: vm.on, simOff: sim.off, simOn: sim.on, spans: rx.spans.length };
  } finally {
    await rx.close();
  }
}
