/**
 * The one root logger. Children per actor carry `sandboxId`/`taskId`; errors go under `err`; a line
 * logged while a trace span is active carries `trace_id` and `span_id` (util/trace.ts).
 */
import { pino, type Logger } from 'pino';
import { traceFields, tracing } from './util/trace.ts';

export type { Logger };

/**
 * The one logger shape a module takes when it logs: pino's calling convention, fields first (an error
 * under `err`), then the message. A pino {@link Logger} is one, and so is a child of it; tests pass a
 * small fake. Taking a `Log` rather than a `Logger` keeps such modules free of pino.
 * @example o.log?.warn({ err: e, node }, 'release after a refused create failed')
 */
export interface Log {
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
}

export function rootLogger(opts: { name: string; level?: string; destination?: number }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? process.env.CORRAL_LOG_LEVEL ?? 'info',
      redact: { paths: ['*.password', '*.token', '*.creds', 'request.options.credentials'], censor: '[redacted]' },
      base: { pid: process.pid },
      // Only when tracing is on (util/trace.ts; the CLI's entry point starts it before any logger is made).
      ...(tracing() ? { mixin: traceFields } : {}),
    },
    pino.destination({ dest: opts.destination ?? 2, sync: true }),
  );
}
