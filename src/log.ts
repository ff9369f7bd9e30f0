/** The one root logger. Children per actor carry `sandboxId`/`taskId`; errors go under `err`. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function rootLogger(opts: { name: string; level?: string; destination?: number }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? process.env.CORRAL_LOG_LEVEL ?? 'info',
      redact: { paths: ['*.password', '*.token', '*.creds', 'request.options.credentials'], censor: '[redacted]' },
      base: { pid: process.pid },
    },
    pino.destination({ dest: opts.destination ?? 2, sync: true }),
  );
}
