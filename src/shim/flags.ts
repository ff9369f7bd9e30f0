/**
 * The shim's command line as containerd's shim manager writes it (runtime/v2/binary.go, 1.6 and 1.7):
 * Go `flag` style (`-name value`, `-name=value`, `-debug` alone), flags first, then the action word,
 * `start` or `delete`; none runs the ttrpc server (the daemon `start` re-executes).
 */
import { err } from '../errors.ts';

export interface ShimFlags {
  namespace: string;
  /** containerd's gRPC socket (`-address`): part of the socket name, and what `-publish-binary` talks to. */
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  /** The daemon's own socket (set by `start` when it re-executes). */
  socket: string;
  /** `reap`: not containerd's; `delete` re-executes itself with it to finish a teardown past containerd's 5 s. */
  action: 'start' | 'delete' | 'reap' | 'serve';
}

const STRINGS = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
} as const;

export function parseFlags(argv: readonly string[]): ShimFlags {
  const f: ShimFlags = {
    namespace: '',
    address: '',
    publishBinary: '',
    id: '',
    bundle: '',
    debug: false,
    socket: '',
    action: 'serve',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      if (a !== 'start' && a !== 'delete')
        throw err.invalid(`unknown action ${JSON.stringify(a)}: expected start or delete`);
      if (i !== argv.length - 1) throw err.invalid(`arguments after the action ${a}: ${argv.slice(i + 1).join(' ')}`);
      f.action = a;
      break;
    }
    const [name, inline] = a.replace(/^--?/, '').split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === 'debug' || name === 'v') {
      if (name === 'debug') f.debug = inline === undefined || inline === 'true';
      continue;
    }
    if (!Object.hasOwn(STRINGS, name)) throw err.invalid(`unknown flag -${name}`);
    const key = STRINGS[name as keyof typeof STRINGS];
    const v = inline ?? argv[++i];
    if (v === undefined) throw err.invalid(`flag -${name} needs a value`);
    f[key] = v;
  }
  if (f.action !== 'serve' && (!f.id || !f.namespace)) throw err.invalid(`${f.action} needs -id and -namespace`);
  if (f.action === 'serve' && !f.socket)
    throw err.invalid(
      'no action: containerd runs this shim with start or delete (start runs the daemon, with -socket)',
    );
  return f;
}
