/**
 * Traces (OpenTelemetry API and trace SDK). Off unless an OTLP endpoint is configured, by the standard
 * environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT` (plus
 * `/v1/traces`); `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep it off. On, each process
 * exports its spans with a BatchSpanProcessor (`OTEL_BSP_*` tune it) over OTLP/HTTP protobuf, named by
 * `OTEL_SERVICE_NAME` or else by itself (`corral-agent`, `corral-worker-mount`, ...: {@link startTracing}).
 * Off, no provider is registered and every helper here is a function call that returns at once (the API's
 * no-op tracer is not even reached).
 *
 * The W3C context (`traceparent`, `tracestate`) travels in NATS message headers (bus/trace-headers.ts)
 * and in ttrpc metadata (the shim); the active span follows async work through AsyncLocalStorage
 * (trace-w3c.ts). Spans end before the process does: {@link stopTracing} flushes them (the CLI's entry
 * point calls it after every command, and `beforeExit` does too); a process killed with SIGKILL loses
 * those not yet exported.
 */
import {
  context,
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanOptions,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { AsyncContextManager, formatTraceparent, parseTraceparent, W3CTraceContext } from './trace-w3c.ts';

export type { Context, Link, Span } from '@opentelemetry/api';
export { SpanKind };

/** The SDK's provider while tracing is on (trace-sdk.ts, loaded only then). */
let provider: { shutdown(): Promise<void> } | undefined;

/** A span that records nothing: what {@link inSpan} hands its function while tracing is off. */
const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The OTLP/HTTP traces URL the environment configures, or undefined: tracing stays off. */
export function tracesUrl(env: NodeJS.ProcessEnv): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === 'none') return undefined;
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return specific;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined;
}

/**
 * Turns tracing on for this process when the environment names an endpoint; `service` is the process's
 * own name (`OTEL_SERVICE_NAME` overrides it). Resolves with whether tracing is on. Idempotent. The SDK
 * and the exporter are loaded here, only then: a process with tracing off never loads them.
 */
export async function startTracing(service: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (provider) return true;
  const url = tracesUrl(env);
  if (!url) return false;
  const { tracerProvider } = await import('./trace-sdk.ts');
  if (provider) return true; // started meanwhile
  const p = tracerProvider(env.OTEL_SERVICE_NAME?.trim() || service, url);
  context.setGlobalContextManager(new AsyncContextManager());
  propagation.setGlobalPropagator(new W3CTraceContext());
  trace.setGlobalTracerProvider(p);
  provider = p;
  process.once('beforeExit', () => void stopTracing());
  return true;
}

/** Exports what is buffered and turns tracing off; bounded by `timeoutMs` (a receiver that is gone). */
export async function stopTracing(timeoutMs = 3000): Promise<void> {
  const p = provider;
  if (!p) return;
  provider = undefined;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p.shutdown().catch(() => {
      // An export that failed (no receiver): the spans are lost, the process is ending anyway.
    }),
    new Promise<void>((r) => (timer = setTimeout(r, timeoutMs).unref())),
  ]);
  clearTimeout(timer);
  trace.disable();
  propagation.disable();
  context.disable();
}

export const tracing = (): boolean => provider !== undefined;

/** Marks `span` failed with `e`, an Error or a wire error (its catalogue code, when it has one, is an attribute). */
export function failSpan(span: Span, e: unknown): void {
  const c = e && typeof e === 'object' ? (e as { code?: unknown }).code : undefined;
  const code = typeof c === 'string' ? c : undefined;
  const m = e && typeof e === 'object' ? (e as { message?: unknown }).message : undefined;
  const message = typeof m === 'string' ? m : String(e);
  if (code) span.setAttribute('corral.error.code', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code ? `${code}: ${message}` : message });
}

export interface InSpanOptions extends SpanOptions {
  /** The parent; @default the active context */
  parent?: Context;
}

/**
 * Runs `fn` in a new span, child of the active one (or of `o.parent`), ended when `fn` settles; a
 * rejection marks it failed and is passed on. Off: `fn` runs with a span that records nothing.
 */
export function inSpan<T>(name: string, fn: (span: Span) => Promise<T>, o: InSpanOptions = {}): Promise<T> {
  if (!provider) return fn(NOOP_SPAN);
  const { parent = context.active(), ...opts } = o;
  const span = trace.getTracer('corral').startSpan(name, opts, parent);
  return context.with(trace.setSpan(parent, span), async () => {
    try {
      return await fn(span);
    } catch (e) {
      failSpan(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

/** Starts a span whose end is the caller's (a request answered later); undefined while tracing is off. */
export function startSpan(name: string, o: InSpanOptions = {}): { span: Span; ctx: Context } | undefined {
  if (!provider) return undefined;
  const { parent = context.active(), ...opts } = o;
  const span = trace.getTracer('corral').startSpan(name, opts, parent);
  return { span, ctx: trace.setSpan(parent, span) };
}

/** Runs `fn` with `ctx` active. */
export const withContext = <T>(ctx: Context, fn: () => T): T => context.with(ctx, fn);

/**
 * The context a carrier (message headers, ttrpc metadata) brings: its remote parent, or the root (a
 * request without one starts a trace of its own, whatever context its callback happens to run in).
 */
export function extractContext<C>(carrier: C, getter: TextMapGetter<C>): Context {
  return propagation.extract(ROOT_CONTEXT, carrier, getter);
}

/** Writes the active context into a carrier; nothing when tracing is off or no span is active. */
export function injectContext<C>(carrier: C, setter: TextMapSetter<C>): void {
  if (provider) propagation.inject(context.active(), carrier, setter);
}

/** An event on the active span (the guest agent's READY). */
export function traceEvent(name: string, attributes?: Attributes): void {
  if (provider) trace.getActiveSpan()?.addEvent(name, attributes);
}

const activeContext = () => {
  const sc = provider ? trace.getActiveSpan()?.spanContext() : undefined;
  return sc && isSpanContextValid(sc) ? sc : undefined;
};

/** The active span's trace id (what event log records carry as `traceId`). */
export const activeTraceId = (): string | undefined => activeContext()?.traceId;

/** The active span as a `traceparent` value (recorded with a create's write-ahead input). */
export function activeTraceparent(): string | undefined {
  const sc = activeContext();
  return sc ? formatTraceparent(sc) : undefined;
}

/** A span link to the span a recorded `traceparent` names; undefined when it does not parse. */
export function linkTo(traceparent: unknown, attributes?: Attributes): Link | undefined {
  const sc = typeof traceparent === 'string' ? parseTraceparent(traceparent) : undefined;
  return sc ? { context: sc, ...(attributes ? { attributes } : {}) } : undefined;
}

/**
 * The fields a log line gets while a span is active (pino's `mixin`): `trace_id`, `span_id`. A new object
 * each time: pino merges the line's own fields into it.
 */
export function traceFields(): Record<string, string> {
  const sc = activeContext();
  return sc ? { trace_id: sc.traceId, span_id: sc.spanId } : {};
}
