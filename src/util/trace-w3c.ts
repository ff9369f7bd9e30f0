/**
 * The two pieces of an OpenTelemetry SDK setup for Node that Corral writes itself (the trace SDK ships
 * neither): a context manager on AsyncLocalStorage, so the active span follows `await`, timers and
 * callbacks; and the W3C Trace Context propagator (`traceparent`, `tracestate`,
 * https://www.w3.org/TR/trace-context/), which trace.ts registers for NATS headers and ttrpc metadata.
 *
 * `traceparent` is `<version>-<trace id>-<parent span id>-<flags>` in lower-case hex; one that does not
 * parse (wrong lengths, all-zero ids, version `ff`, extra fields on version 00) is ignored, as the spec
 * says, and the request then starts a trace of its own.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  createTraceState,
  isSpanContextValid,
  ROOT_CONTEXT,
  trace,
  type Context,
  type ContextManager,
  type SpanContext,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
} from '@opentelemetry/api';

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

const PARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** A span context as a `traceparent` value. */
export function formatTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** A `traceparent` value as a remote span context; undefined when it is not a valid one. */
export function parseTraceparent(v: string | undefined, state?: string): SpanContext | undefined {
  const m = v === undefined ? null : PARENT.exec(v.trim());
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  const sc: SpanContext = {
    traceId: m[2]!,
    spanId: m[3]!,
    traceFlags: parseInt(m[4]!, 16),
    isRemote: true,
    ...(state ? { traceState: createTraceState(state) } : {}),
  };
  return isSpanContextValid(sc) ? sc : undefined;
}

/** W3C Trace Context: the active span's context out (inject), a remote parent in (extract). */
export class W3CTraceContext implements TextMapPropagator {
  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    const sc = trace.getSpanContext(ctx);
    if (!sc || !isSpanContextValid(sc)) return;
    setter.set(carrier, TRACEPARENT, formatTraceparent(sc));
    const state = sc.traceState?.serialize();
    if (state) setter.set(carrier, TRACESTATE, state);
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    const one = (k: string) => {
      const v = getter.get(carrier, k);
      return Array.isArray(v) ? v.join(',') : v;
    };
    const sc = parseTraceparent(one(TRACEPARENT), one(TRACESTATE));
    return sc ? trace.setSpanContext(ctx, sc) : ctx;
  }

  fields(): string[] {
    return [TRACEPARENT, TRACESTATE];
  }
}

/** The active context is the AsyncLocalStorage store: it follows the async work started inside `with`. */
export class AsyncContextManager implements ContextManager {
  private readonly als = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.als.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.als.run(ctx, () => fn.apply(thisArg, args));
  }

  /** A function bound to `ctx` (other targets, event emitters included, are returned as they are). */
  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const f = target as (...args: unknown[]) => unknown;
    const run = (self: unknown, args: unknown[]) => this.als.run(ctx, () => f.apply(self, args));
    const bound = function (this: unknown, ...args: unknown[]) {
      return run(this, args);
    };
    return bound as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.als.disable();
    return this;
  }
}
