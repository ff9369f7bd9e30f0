/**
 * NATS client errors → Corral's codes by class and API code, never by message text: each case below
 * gives the real nats.js error class a message that would mislead a text match.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { jserrors } from '@nats-io/jetstream/internal';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { isTransientPublishError } from '../../src/bus/eventlog.ts';
import {
  isConsumerNotFound,
  isNatsTimeout,
  isNoResponders,
  isStreamNotFound,
  isWrongLastSequence,
} from '../../src/bus/nats-errors.ts';
import { request, requestError } from '../../src/bus/rpc.ts';
import { CorralError, err } from '../../src/errors.ts';
import { isRevisionConflict } from '../../src/fleet/registry.ts';

const noResponders = (message = 'no responders') =>
  new errors.RequestError(message, { cause: new errors.NoRespondersError('corral.v1.x') });
const timeout = (message?: string) => {
  const e = new errors.TimeoutError();
  if (message !== undefined) e.message = message;
  return e;
};
const apiError = (status: number, errCode: number, description = 'x') =>
  new JetStreamApiError({ code: status, err_code: errCode, description });
/** A plain Error whose text names every case a text match looked for. */
const lookalike = () => new Error('timeout: no responders (503), wrong last sequence, stream not found');

describe('NATS error classes', () => {
  it('a TimeoutError is a timeout whatever its text; an Error saying "timeout" is not', () => {
    expect(isNatsTimeout(timeout())).toBe(true);
    expect(isNatsTimeout(timeout('no responders 503'))).toBe(true);
    expect(isNatsTimeout(lookalike())).toBe(false);
  });
  it('no responders: a RequestError caused by NoRespondersError, or the bare class', () => {
    expect(isNoResponders(noResponders('timeout'))).toBe(true);
    expect(isNoResponders(new errors.NoRespondersError('s'))).toBe(true);
    expect(isNoResponders(new errors.RequestError('no responders 503'))).toBe(false);
    expect(isNoResponders(lookalike())).toBe(false);
    expect(isNoResponders(undefined)).toBe(false);
  });
  it('JetStream API codes: stream/consumer not found, wrong last sequence', () => {
    expect(isStreamNotFound(apiError(404, 10059))).toBe(true);
    expect(isStreamNotFound(new jserrors.StreamNotFoundError({ code: 404, err_code: 10059, description: 'x' }))).toBe(
      true,
    );
    expect(isStreamNotFound(apiError(404, 10014, 'stream not found'))).toBe(false);
    expect(isConsumerNotFound(apiError(404, 10014))).toBe(true);
    expect(isWrongLastSequence(apiError(400, 10071))).toBe(true);
    expect(isWrongLastSequence(apiError(400, 10164))).toBe(true);
    for (const f of [isStreamNotFound, isConsumerNotFound, isWrongLastSequence]) expect(f(lookalike())).toBe(false);
  });
  it('a cause cycle ends the walk', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect(isNatsTimeout(a)).toBe(false);
  });
});

describe('rpc: a failed request → the catalogue', () => {
  it('maps a timeout to Timeout and no responders to Unavailable', () => {
    expect(requestError(timeout('no responders'), 's', 100).code).toBe('Timeout');
    expect(requestError(noResponders('timeout'), 's', 100).code).toBe('Unavailable');
    expect(requestError(lookalike(), 's', 100).code).toBe('Unavailable');
    expect(requestError(new errors.ClosedConnectionError(), 's', 100).code).toBe('Unavailable');
  });
  it('keeps a CorralError thrown on the way (a cancelled request stays Cancelled)', () => {
    expect(requestError(err.cancelled('abandoned'), 's', 100).code).toBe('Cancelled');
  });
  it('request() rejects with those codes, and keeps the NATS error as the cause', async () => {
    // A connection whose publish fails with `e` (requests go out through src/bus/reply-mux.ts).
    const failing = (e: unknown) =>
      ({
        isClosed: () => false,
        subscribe: () => ({ closed: new Promise(() => {}) }),
        publish: () => {
          throw e;
        },
      }) as unknown as NatsConnection;
    const t = timeout();
    await expect(request(failing(t), 'corral.v1.x', {}, 100)).rejects.toMatchObject({ code: 'Timeout', cause: t });
    await expect(request(failing(noResponders()), 'corral.v1.x', {}, 100)).rejects.toMatchObject({
      code: 'Unavailable',
      retryable: true,
    });
    await expect(request(failing(lookalike()), 'corral.v1.x', {}, 100)).rejects.toBeInstanceOf(CorralError);
    await expect(request(failing(lookalike()), 'corral.v1.x', {}, 100)).rejects.toMatchObject({ code: 'Unavailable' });
  });
});

describe('event log: which publish errors are worth another attempt', () => {
  it('a timeout, no responders (also as JetStreamNotEnabled) and JetStream 503 are transient', () => {
    expect(isTransientPublishError(timeout())).toBe(true);
    expect(isTransientPublishError(noResponders())).toBe(true);
    expect(isTransientPublishError(new jserrors.JetStreamNotEnabled('x', { cause: noResponders() }))).toBe(true);
    expect(isTransientPublishError(apiError(503, 10008))).toBe(true);
  });
  it('a closed or draining connection, another API error, or lookalike text are not', () => {
    expect(isTransientPublishError(new errors.ClosedConnectionError())).toBe(false);
    expect(isTransientPublishError(new errors.DrainingConnectionError())).toBe(false);
    expect(isTransientPublishError(apiError(400, 10071, 'timeout'))).toBe(false);
    expect(isTransientPublishError(new errors.RequestError('connection disconnected: timeout'))).toBe(false);
    expect(isTransientPublishError(lookalike())).toBe(false);
    expect(isTransientPublishError(undefined)).toBe(false);
  });
});

describe('registry: a lost compare-and-swap', () => {
  it('is the JetStream code, not the text', () => {
    expect(isRevisionConflict(apiError(400, 10071))).toBe(true);
    expect(isRevisionConflict(lookalike())).toBe(false);
  });
});
