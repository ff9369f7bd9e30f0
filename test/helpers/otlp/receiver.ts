/**
 * An OTLP/HTTP trace receiver for tests: a node http server on a free port of 127.0.0.1 that accepts
 * `POST /v1/traces` with `application/x-protobuf` (what @opentelemetry/exporter-trace-otlp-proto sends),
 * decodes each ExportTraceServiceRequest with the Protobuf-ES messages generated from the OTLP protos in
 * ./proto (./gen), and keeps every span, flattened with its resource's `service.name`. Ids are lower-case
 * hex, as in `traceparent`. Anything else is answered 404 (path) or 415 (content type).
 */
import { createServer, type IncomingMessage } from 'node:http';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
} from './gen/opentelemetry/proto/collector/trace/v1/trace_service_pb.ts';
import type { AnyValue, KeyValue } from './gen/opentelemetry/proto/common/v1/common_pb.ts';

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
  links: { traceId: string; spanId: string; attributes: Record<string, unknown> }[];
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  startNs: bigint;
  endNs: bigint;
}

export interface OtlpReceiver {
  /** The base URL: what OTEL_EXPORTER_OTLP_ENDPOINT takes (the exporter adds /v1/traces). */
  url: string;
  spans: ReceivedSpan[];
  /** Export requests received. */
  exports: number;
  close(): Promise<void>;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function valueOf(v: AnyValue | undefined): unknown {
  const x = v?.value;
  if (!x || x.case === undefined) return undefined;
  if (x.case === 'arrayValue') return x.value.values.map(valueOf);
  if (x.case === 'kvlistValue') return attrs(x.value.values);
  if (x.case === 'intValue') return Number(x.value);
  return x.value;
}

const attrs = (kvs: KeyValue[]) => Object.fromEntries(kvs.map((kv) => [kv.key, valueOf(kv.value)]));

const body = (req: IncomingMessage) =>
  new Promise<Buffer>((res, rej) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res(Buffer.concat(chunks)));
    req.on('error', rej);
  });

export async function otlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rx = { exports: 0 };
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') return res.writeHead(404).end();
    if (!req.headers['content-type']?.startsWith('application/x-protobuf')) return res.writeHead(415).end();
    body(req).then(
      (bytes) => {
        const ex = fromBinary(ExportTraceServiceRequestSchema, bytes);
        rx.exports++;
        for (const rs of ex.resourceSpans) {
          const service = String(attrs(rs.resource?.attributes ?? [])['service.name'] ?? '');
          for (const ss of rs.scopeSpans)
            for (const s of ss.spans)
              spans.push({
                service,
                traceId: hex(s.traceId),
                spanId: hex(s.spanId),
                parentSpanId: hex(s.parentSpanId),
                name: s.name,
                kind: s.kind,
                attributes: attrs(s.attributes),
                events: s.events.map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
                links: s.links.map((l) => ({
                  traceId: hex(l.traceId),
                  spanId: hex(l.spanId),
                  attributes: attrs(l.attributes),
                })),
                status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
                startNs: s.startTimeUnixNano,
                endNs: s.endTimeUnixNano,
              });
        }
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end(toBinary(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema)));
      },
      () => res.writeHead(400).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    get exports() {
      return rx.exports;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
