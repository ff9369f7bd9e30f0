/**
 * The `start` subcommand (containerd-shim-v2.md §1.3): print the shim's address and nothing else, once it
 * accepts. A task of a pod whose shim runs gets that shim's address. Otherwise the shim re-executes itself
 * without the action (plus `-socket`), detached in its own session with no inherited stdio (containerd reads
 * start's output until EOF), and reports readiness, or why it failed, on fd 3. The address is also written
 * to `<bundle>/address`, where a restarted containerd finds it.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { err } from '../errors.ts';
import type { ShimFlags } from './flags.ts';
import { accepting, groupOf, socketPath } from './socket.ts';

const READY_MS = 60_000;

export async function shimStart(f: ShimFlags, argv: readonly string[]): Promise<string> {
  const bundle = process.cwd();
  const socket = socketPath(f.address, f.namespace, groupOf(bundle, f.id), process.env.TTRPC_ADDRESS);
  const address = `unix://${socket}`;
  if (!(await accepting(socket))) {
    mkdirSync(dirname(socket), { recursive: true, mode: 0o711 });
    await launch([...argv.filter((a) => a !== 'start'), '-socket', socket], bundle);
  }
  writeFileSync(join(bundle, 'address'), address);
  return address;
}

function launch(args: string[], cwd: string): Promise<void> {
  const script = process.argv[1];
  if (!script) throw err.internal('cannot tell which script runs the shim (process.argv[1] is empty)');
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    cwd,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
  });
  return new Promise((res, rej) => {
    let said = '';
    const t = setTimeout(() => fail(err.timeout(`the shim did not get ready within ${READY_MS / 1000} s`)), READY_MS);
    const fail = (e: Error) => {
      clearTimeout(t);
      child.kill('SIGKILL');
      rej(e);
    };
    const pipe = child.stdio[3];
    if (!(pipe instanceof Readable)) return fail(err.internal('no readiness pipe to the shim'));
    pipe.on('data', (b: Buffer) => {
      said += b.toString();
      if (!said.includes('\n')) return;
      clearTimeout(t);
      if (said.startsWith('ready')) {
        pipe.removeAllListeners();
        pipe.destroy();
        child.removeAllListeners('exit');
        child.unref();
        res();
      } else fail(err.unavailable(said.trim().replace(/^error: /, '')));
    });
    child.once('exit', (code, sig) =>
      fail(err.unavailable(`the shim exited (${sig ?? code}) before it was ready: ${said.trim()}`)),
    );
  });
}
