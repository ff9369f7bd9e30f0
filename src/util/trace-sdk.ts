/**
 * The trace SDK as Corral configures it (util/trace.ts loads this module only when tracing is on): a
 * BasicTracerProvider whose resource names the process (`service.name`, a fresh `service.instance.id`,
 * `process.pid`), with a BatchSpanProcessor (`OTEL_BSP_*` from the environment tune it) in front of the
 * OTLP/HTTP protobuf exporter posting to `url`. The sampler is the SDK's (`OTEL_TRACES_SAMPLER`).
 */
import { randomUUID } from 'node:crypto';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export function tracerProvider(service: string, url: string): BasicTracerProvider {
  return new BasicTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: service,
      [ATTR_SERVICE_INSTANCE_ID]: randomUUID(),
      'process.pid': process.pid,
    }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }))],
  });
}
