/**
 * The trace plumbing without a node: the environment that turns traces on, W3C `traceparent` parsing and
 * propagation, span names of served subjects, and the fields log lines and records get while a span is
 * active (to an endpoint nobody listens on: nothing here waits for an export).
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rootLogger } from '../../src/log.ts';
import { operationName } from '../../src/bus/trace-headers.ts';
import {
  activeTraceId,
  activeTraceparent,
  inSpan,
  linkTo,
  startTracing,
  stopTracing,
  traceFields,
  tracesUrl,
  tracing,
} from '../../src/util/trace.ts';
import { formatTraceparent, parseTraceparent } from '../../src/util/trace-w3c.ts';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('configuration', () => {
  it('is off without an endpoint, on with one; the traces endpoint wins and is used as is', () => {
    expect(tracesUrl({})).toBeUndefined();
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })).toBe('http://c:4318/v1/traces');
    expect(
      tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t/x' }),
    ).toBe('http://t/x');
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
    expect(tracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c', OTEL_TRACES_EXPORTER: 'none' })).toBeUndefined();
  });
});

describe('W3C traceparent', () => {
  it('parses a valid one, formats it back, and ignores malformed ones', () => {
    const sc = parseTraceparent(TP, 'k=v')!;
    expect(sc).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
    });
    expect(sc.traceState?.get('k')).toBe('v');
    expect(formatTraceparent(sc)).toBe(TP);
    for (const bad of [
      '',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
      '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01',
      `${TP}-extra`,
    ])
      expect(parseTraceparent(bad), bad).toBeUndefined();
    expect(parseTraceparent(`01-${TP.slice(3)}-future`)).toBeDefined(); // a later version may add fields
    expect(linkTo(TP)?.context.spanId).toBe('b7ad6b7169203331');
    expect(linkTo('nonsense')).toBeUndefined();
  });
});

describe('span names of served subjects', () => {
  it('drop the prefix, the node and ids', () => {
    expect(operationName('corral.v1.node.n1.task.create')).toBe('task.create');
    expect(operationName('corral.v1.node.n1.worker.mount.mountRootfs')).toBe('worker.mount.mountRootfs');
    expect(operationName('corral.v1.fleet.task.create')).toBe('fleet.task.create');
    expect(operationName('corral.v1.node.n1.io.c1.stdin')).toBe('io.stdin');
    expect(operationName('corral.v1.node.n1.io.c1.exec.e1.stdin')).toBe('io.exec.stdin');
  });
});

describe('while tracing is on', () => {
  afterAll(() => stopTracing(100));

  it('a span is active across await: log lines, the trace id and traceparent come from it', async () => {
    expect(traceFields()).toEqual({});
    expect(await startTracing('corral-test', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9' })).toBe(true);
    expect(tracing()).toBe(true);
    await inSpan('outer', async (span) => {
      await new Promise((r) => setTimeout(r, 1));
      const { traceId, spanId } = span.spanContext();
      expect(traceFields()).toEqual({ trace_id: traceId, span_id: spanId });
      expect(activeTraceId()).toBe(traceId);
      expect(activeTraceparent()).toBe(`00-${traceId}-${spanId}-01`);
    });
    expect(activeTraceId()).toBeUndefined();

    // Log lines: trace_id and span_id inside a span, nothing outside; each line's own fields kept.
    const dir = mkdtempSync('/tmp/corral-trace-');
    const fd = openSync(join(dir, 'log'), 'w');
    const log = rootLogger({ name: 't', destination: fd });
    log.info({ a: 1 }, 'outside');
    const ids = await inSpan('logged', async (span) => {
      log.info({ b: 2 }, 'inside');
      log.info({ c: 3 }, 'again');
      return span.spanContext();
    });
    closeSync(fd);
    const lines = readFileSync(join(dir, 'log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    rmSync(dir, { recursive: true });
    expect(lines[0]).toMatchObject({ a: 1, msg: 'outside' });
    expect(lines[0]).not.toHaveProperty('trace_id');
    for (const [i, f] of [[1, { b: 2 }] as const, [2, { c: 3 }] as const])
      expect(lines[i]).toMatchObject({ ...f, trace_id: ids.traceId, span_id: ids.spanId });
    await stopTracing(100);
    expect(tracing()).toBe(false);
  });
});
