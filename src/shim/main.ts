/**
 * `containerd-shim-corral-v2`: containerd's runtime v2 shim for Corral (docs/containerd.md). containerd
 * runs it with `start`, with `delete`, and `start` runs it again without an action as the daemon. Errors
 * print one line on stderr (containerd logs it) and exit 1; `start` and `delete` write only their result
 * on stdout.
 */
import { ensureError } from '../errors.ts';
import { shimConfig } from './config.ts';
import { REAP_DEADLINE_MS, shimDelete, stopAndDelete } from './delete.ts';
import { parseFlags } from './flags.ts';
import { shimServe } from './serve.ts';
import { shimStart } from './start.ts';

const argv = process.argv.slice(2);
try {
  const f = parseFlags(argv);
  const cfg = shimConfig();
  const done = (out: string | Uint8Array) => process.stdout.write(out, () => process.exit(0)); // nothing may linger
  if (f.action === 'start') done(await shimStart(f, argv));
  else if (f.action === 'delete') done(await shimDelete(f, cfg, (m) => process.stderr.write(`${m}\n`)));
  else if (f.action === 'reap') await stopAndDelete(f, cfg, REAP_DEADLINE_MS).then(() => process.exit(0));
  else await shimServe(f, cfg);
} catch (e) {
  const ce = ensureError(e);
  process.stderr.write(`containerd-shim-corral-v2: ${ce.code}: ${ce.message}\n`);
  process.exit(1);
}
