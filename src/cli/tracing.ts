/**
 * Traces of a `corral` process (util/trace.ts; on only when OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set). Each process traces under its own name: `corral-agent`,
 * `corral-worker-<kind>`, `corral-fleet-controller`, and `corral-cli` for everything else. A client
 * command (run, create, events, ...) is the root span of its trace, `corral <command>`: the requests it
 * sends carry it to the agent and on to the workers. The services (agent, workers, the fleet controller,
 * `up`) run until stopped: each request they serve is a span of the requester's trace instead. Whatever
 * the command, its spans are flushed before it returns.
 */
import { inSpan, SpanKind, startTracing, stopTracing } from '../util/trace.ts';

/** The service name a process started with these arguments traces under. */
export function serviceOf(argv: string[]): string {
  const [cmd, sub] = argv;
  if (cmd === 'agent') return 'corral-agent';
  if (cmd === 'worker' && sub && /^[a-z]+$/.test(sub)) return `corral-worker-${sub}`;
  if (cmd === 'fleet' && sub === 'controller') return 'corral-fleet-controller';
  return 'corral-cli';
}

/** Runs the command `argv` names (`run`) with tracing as configured, in its root span if it is a client command. */
export async function traced(argv: string[], run: () => Promise<number>): Promise<number> {
  const service = serviceOf(argv);
  const cmd = argv[0] ?? 'help';
  try {
    if (!(await startTracing(service)) || service !== 'corral-cli' || cmd === 'up') return await run();
    return await inSpan(
      `corral ${cmd}`,
      async (span) => {
        const code = await run();
        span.setAttribute('corral.exit_code', code);
        return code;
      },
      { kind: SpanKind.CLIENT, attributes: { 'corral.command': cmd } },
    );
  } finally {
    await stopTracing();
  }
}
