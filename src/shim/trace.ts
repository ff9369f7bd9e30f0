/**
 * Traces in the shim daemon (`corral-shim`; on only when the OTLP endpoint is set in its environment,
 * util/trace.ts): each ttrpc call is a SERVER span named `<service>/<method>`
 * (`containerd.task.v2.Task/Create`), child of the caller's span when containerd sends W3C
 * `traceparent`/`tracestate` in the request metadata, ended when the call is answered. The Task API
 * requests the call makes carry it on to the agent.
 */
import { extractContext, inSpan, SpanKind, tracing } from '../util/trace.ts';
import type { Metadata, ServiceHandlers, UnaryHandler } from './ttrpc/service.ts';

const metadataGetter = {
  get: (md: Metadata, key: string) => (md[key] ? [...md[key]] : undefined),
  keys: (md: Metadata) => Object.keys(md),
};

/** `svc` with each method in its span; `svc` itself while tracing is off. */
export function tracedService(svc: ServiceHandlers): ServiceHandlers {
  if (!tracing()) return svc;
  const methods: Record<string, UnaryHandler> = {};
  for (const [method, h] of Object.entries(svc.methods))
    methods[method] = (payload, ctx) =>
      inSpan(`${svc.service}/${method}`, () => h(payload, ctx), {
        kind: SpanKind.SERVER,
        parent: extractContext(ctx.metadata, metadataGetter),
        attributes: { 'rpc.system': 'ttrpc', 'rpc.service': svc.service, 'rpc.method': method },
      });
  return { service: svc.service, methods };
}
