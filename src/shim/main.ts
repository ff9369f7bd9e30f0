/**
 * `containerd-shim-corral-v2`: containerd's runtime v2 shim for Corral (docs/containerd.md). containerd
 * runs it with `start`, with `delete`, and `start` runs it again without an action as the daemon. Errors
 * print one line on stderr (containerd logs it) and exit 1; `start` and `delete` write only their result
 * on stdout.
 */
import { ensureError } from '../errors.ts';
import { parseFlags } from './flags.ts';

const argv = process.argv.slice(2);
try {
  const f = parseFlags(argv);
  const cfg = async () => (await import('./config.ts')).shimConfig();
  const done = (out: string | Uint8Array) => process.stdout.write(out, () => process.exit(0)); // nothing may linger
  // Each action loads only its own modules: `start` runs for every task and containerd waits on it.
  if (f.action === 'start') done(await (await import('./start.ts')).shimStart(f, argv));
  else if (f.action === 'delete') {
    const { shimDelete } = await import('./delete.ts');
    done(await shimDelete(f, await cfg(), (m) => process.stderr.write(`${m}\n`)));
  } else if (f.action === 'reap') {
    const { REAP_DEADLINE_MS, stopAndDelete } = await import('./delete.ts');
    await stopAndDelete(f, await cfg(), REAP_DEADLINE_MS).then(() => process.exit(0));
  } else await (await import('./serve.ts')).shimServe(f, await cfg());
} catch (e) {
  const ce = ensureError(e);
  process.stderr.write(`containerd-shim-corral-v2: ${ce.code}: ${ce.message}\n`);
  process.exit(1);
}
