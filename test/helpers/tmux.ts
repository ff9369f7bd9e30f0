/**
 * A real terminal for tests: a detached tmux session of a given size running a shell command, keys sent
 * as a person types them, the screen read back (`capture-pane`, which trims trailing spaces). `remain`
 * keeps the pane after the command (its exit code printed as `<tag>-exit=N`). `killAll` ends every
 * session this module started.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { waitFor } from './wait.ts';

const sessions: string[] = [];

function tmux(args: string[], ok = false): string {
  try {
    return execFileSync('tmux', args, { encoding: 'utf8' });
  } catch (e) {
    if (ok) return '';
    throw e;
  }
}

export function terminal(command: string, o: { cols?: number; rows?: number; tag?: string } = {}) {
  const s = `corral-tty-${randomBytes(4).toString('hex')}`;
  sessions.push(s);
  const tag = o.tag ?? 'cmd';
  const cmd = `${command}; echo ${tag}-exit=$?; sleep 600`;
  tmux(['new-session', '-d', '-s', s, '-x', String(o.cols ?? 100), '-y', String(o.rows ?? 30), cmd]);
  const screen = () => tmux(['capture-pane', '-p', '-t', s]);
  return {
    screen,
    keys: (...k: string[]) => void tmux(['send-keys', '-t', s, ...k]),
    resize: (cols: number, rows: number) =>
      void tmux(['resize-window', '-t', s, '-x', String(cols), '-y', String(rows)]),
    /** Waits until the screen matches. */
    seen: (what: RegExp, timeoutMs = 60_000) =>
      waitFor(screen, { until: (t) => what.test(t), timeoutMs, intervalMs: 100, what: `${what} on screen` }),
    kill: () => void tmux(['kill-session', '-t', s], true),
  };
}

export function killAllTerminals() {
  for (const s of sessions.splice(0)) tmux(['kill-session', '-t', s], true);
}
