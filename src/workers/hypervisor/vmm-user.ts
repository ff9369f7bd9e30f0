/**
 * The throw-away user a rootless VMM runs as (Kata §7, `CreateVmmUser`/`configureNonRootHypervisor`),
 * with Kata's bugs fixed:
 *
 * - every failure, including a deadline, removes both `/run/user/<uid>` and the user (§7.2 [C-bug]:
 *   Kata's deferred closures shadowed each other and kept the user);
 * - nothing process-wide is set: the runtime dir is returned (Kata's `setenv XDG_RUNTIME_DIR` leaked
 *   into every later path of the shim, #11526);
 * - uid and gid are range-checked (§7.3) and uid/gid 0 is refused;
 * - removal checks that the name still has the uid it had, and leaves `/run/user/<uid>` alone when
 *   that uid now belongs to another user (#5155: a late teardown deleted a reused uid's user).
 *
 * useradd and userdel are not killed at the deadline: killing them mid-write can leave
 * `/etc/passwd.lock` or a half-written shadow file behind. They are short; the deadline is checked
 * between steps and the step that passes it is rolled back.
 */
import { randomInt } from 'node:crypto';
import { chmod, chown, mkdir, rm, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { CorralError, ensureError, err } from '../../errors.ts';
import type { OpHandlers, VmmUser } from '../../domain/ops.ts';
import { failureMessage, run } from '../exec.ts';
import { Lanes } from '../../util/lanes.ts';
import { parseCreateUser, parseRemoveUser } from './validate.ts';

export const VMM_USER_PREFIX = 'corral-';
export const VMM_USER_COMMENT = 'Corral temporary hypervisor user';
const USERADD_PATHS = ['/usr/sbin/useradd', '/sbin/useradd', '/bin/useradd'];
const USERDEL_PATHS = ['/usr/sbin/userdel', '/sbin/userdel', '/bin/userdel'];
const NOLOGIN_PATHS = ['/usr/sbin/nologin', '/sbin/nologin', '/bin/nologin'];
const ATTEMPTS = 5;
/** useradd/userdel/getent are bounded by this, not by the op's signal (see the file comment). */
const ACCOUNT_CMD_TIMEOUT_MS = 30_000;
const RUNTIME_DIR_MODE = 0o750;
/** Highest id accepted: below (uid_t)-1, which the kernel reserves as "no change". */
const MAX_ID = 0xffff_fffe;
const NAME = /^corral-[A-Za-z0-9_-]{1,24}$/;

/** The steps of `createVmmUser`, in order; `onStep` runs before each (and `done` after the last). */
export type VmmUserStep = 'useradd' | 'lookup' | 'runtimeDir' | 'chown' | 'kvm' | 'done';

export interface CreateVmmUserOptions {
  signal?: AbortSignal;
  /** @default '/run/user' */
  runUserRoot?: string;
  /** @default '/dev/kvm' */
  kvmDevice?: string;
  /**
   * The node the user is made for; it goes into the comment, so that reconciliation on a shared host
   * touches only its own.
   */
  node?: string;
  /** Fault injection for tests: a throw here is a failure of `step`. `sofar` is what exists by then. */
  onStep?: (step: VmmUserStep, sofar: Partial<VmmUser>) => void | Promise<void>;
}

export interface RemoveVmmUserOptions {
  signal?: AbortSignal;
  /** @default '/run/user' */
  runUserRoot?: string;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * useradd/userdel of this process run one at a time: each takes /etc/passwd's lock and a concurrent
 * one fails with "cannot lock /etc/passwd". Other processes' contention is left to the retries.
 */
const accounts = new Lanes();
const serially = <T>(fn: () => Promise<T>): Promise<T> => accounts.run('accounts', fn);

/** The first of `paths` that is a file with any x bit (Kata's `utils.FirstValidExecutable`). */
async function firstExecutable(paths: readonly string[]): Promise<string> {
  for (const p of paths) {
    try {
      const s = await stat(p);
      if (s.isFile() && (s.mode & 0o111) !== 0) return p;
    } catch {
      /* next */
    }
  }
  throw err.internal(`all the executables are invalid: ${paths.join(', ')}`);
}

/** §7.3: each id within 0..MaxUint32 and a safe integer; Corral also refuses 0 (a root VMM is no VMM user). */
function checkId(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_ID) {
    throw err.invalid(`${what} must be an integer in 1..${MAX_ID}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function checkRoot(root: string): string {
  if (!root.startsWith('/') || posix.normalize(root) !== root || root === '/')
    throw err.invalid(`runUserRoot must be an absolute normalized path, got ${JSON.stringify(root)}`);
  return root;
}

/** `getent passwd <key>` (name or uid): the entry, or undefined when there is none. */
async function getentPasswd(
  key: string,
): Promise<{ name: string; uid: number; gid: number; gecos: string; shell: string } | undefined> {
  const r = await run('getent', ['passwd', key], { timeoutMs: ACCOUNT_CMD_TIMEOUT_MS, okCodes: [0, 2] });
  if (r.code === 2) return undefined;
  const f = r.stdout.split('\n')[0]?.split(':') ?? [];
  if (f.length < 7 || !/^\d+$/.test(f[2] ?? '') || !/^\d+$/.test(f[3] ?? ''))
    throw err.internal(`cannot parse the passwd entry of ${key}: ${JSON.stringify(r.stdout.trim())}`);
  return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), gecos: f[4] ?? '', shell: f[6] ?? '' };
}

/**
 * The GECOS comment: `... of sandbox <id>`, plus ` on <node>` when the worker knows its node. It names the
 * sandbox, so that a user whose creation was never confirmed can be found.
 */
export const vmmUserComment = (sandboxId: string, node?: string) =>
  `${VMM_USER_COMMENT} of sandbox ${sandboxId}${node ? ` on ${node}` : ''}`;

/** Corral VMM users created for `sandboxId` (by their comment). */
export async function vmmUsersOfSandbox(sandboxId: string, node?: string): Promise<{ name: string; uid: number }[]> {
  const r = await run('getent', ['passwd'], { timeoutMs: ACCOUNT_CMD_TIMEOUT_MS, okCodes: 'any' });
  return r.stdout
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f[0]?.startsWith(VMM_USER_PREFIX) && f[4] === vmmUserComment(sandboxId, node))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]) }));
}

/** `useradd -M -s <nologin> -c "Corral temporary hypervisor user of sandbox <id>" corral-NNNNN`, up to 5 names. */
async function addUser(sandboxId: string, node?: string): Promise<string> {
  const useradd = await firstExecutable(USERADD_PATHS);
  const nologin = await firstExecutable(NOLOGIN_PATHS);
  let last = '';
  for (let i = 0; i < ATTEMPTS; i++) {
    const name = VMM_USER_PREFIX + String(randomInt(0, 100_000)).padStart(5, '0');
    const args = ['-M', '-s', nologin, '-c', vmmUserComment(sandboxId, node), name];
    const r = await serially(() => run(useradd, args, { timeoutMs: ACCOUNT_CMD_TIMEOUT_MS, okCodes: 'any' }));
    if (r.code === 0) return name;
    last = failureMessage(useradd + ' ' + args.join(' '), r);
    // 9: the name is taken (by someone else: leave it). Any other failure may have left a partial
    // entry of ours behind; remove it before trying the next name.
    if (r.code !== 9 && (await getentPasswd(name).catch(() => undefined)))
      await deleteUser(name).catch(() => {
        // Best effort: the next name is tried either way, and an entry left behind names the sandbox in
        // its comment, so a removeUser without a name finds it (vmmUsersOfSandbox).
      });
    // 10: /etc/passwd is locked by a concurrent useradd; give it a moment.
    if (r.code === 10 || r.code === 1) await sleep(20 + randomInt(0, 80));
  }
  throw err.internal(`could not create VMM user: ${last}`);
}

/** `userdel -f <name>`, retried up to 5 times; "does not exist" is success. True when it removed the user. */
async function deleteUser(name: string, signal?: AbortSignal): Promise<boolean> {
  const userdel = await firstExecutable(USERDEL_PATHS);
  let last = '';
  for (let i = 0; i < ATTEMPTS; i++) {
    if (i > 0) {
      signal?.throwIfAborted();
      await sleep(50 * i + randomInt(0, 50));
    }
    const r = await serially(() => run(userdel, ['-f', name], { timeoutMs: ACCOUNT_CMD_TIMEOUT_MS, okCodes: 'any' }));
    if (r.code === 0) return true;
    if (r.code === 6 || /does not exist/i.test(r.stderr)) return false;
    last = failureMessage(`${userdel} -f ${name}`, r);
  }
  throw err.internal(`could not remove VMM user ${name}: ${last}`);
}

/** The gid of the KVM device, unless it is missing (no KVM: no group) or 0 (never hand the root group to the VMM). */
async function kvmGroups(device: string): Promise<number[]> {
  try {
    const s = await stat(device);
    return s.gid === 0 ? [] : [s.gid];
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err.internal(`failed to get the gid of ${device}: ${(e as Error).message}`, e);
  }
}

/**
 * Kata §7.1 with the §7.2 leak fixed: create `corral-<5 digits>`, look it up, recreate
 * `/run/user/<uid>` (0750, owned by the user), and add the gid of /dev/kvm to `groups`.
 * On any failure both the directory and the user are removed before the error is thrown.
 */
export async function createVmmUser(sandboxId: string, o: CreateVmmUserOptions = {}): Promise<VmmUser> {
  if (typeof sandboxId !== 'string' || sandboxId.length === 0 || sandboxId.length > 256)
    throw err.invalid('createVmmUser: sandboxId must be a non-empty string');
  const root = checkRoot(o.runUserRoot ?? '/run/user');
  const { signal } = o;
  signal?.throwIfAborted();
  const sofar: Partial<VmmUser> = {};
  let dirTouched = false;
  const step = async (s: VmmUserStep) => {
    signal?.throwIfAborted();
    await o.onStep?.(s, { ...sofar });
  };
  try {
    await step('useradd');
    sofar.user = await addUser(sandboxId, o.node);

    await step('lookup');
    const entry = await getentPasswd(sofar.user);
    if (!entry) throw err.internal(`VMM user ${sofar.user} was created but cannot be looked up`);
    sofar.uid = checkId(entry.uid, `uid of ${sofar.user}`);
    sofar.gid = checkId(entry.gid, `gid of ${sofar.user}`);
    const dir = posix.join(root, String(sofar.uid));

    await step('runtimeDir');
    dirTouched = true;
    await rm(dir, { recursive: true, force: true }); // a leftover of an earlier user with this uid
    await mkdir(root, { recursive: true, mode: 0o755 });
    await mkdir(dir, { mode: RUNTIME_DIR_MODE });
    await chmod(dir, RUNTIME_DIR_MODE);
    sofar.runtimeDir = dir;

    await step('chown');
    await chown(dir, sofar.uid, sofar.gid);

    await step('kvm');
    sofar.groups = await kvmGroups(o.kvmDevice ?? '/dev/kvm');

    await step('done');
    return { user: sofar.user, uid: sofar.uid, gid: sofar.gid, groups: sofar.groups, runtimeDir: dir };
  } catch (e) {
    const first = ensureError(e);
    const problems: string[] = [];
    if (dirTouched && sofar.uid !== undefined) {
      await rm(posix.join(root, String(sofar.uid)), { recursive: true, force: true }).catch((x: unknown) =>
        problems.push(`cannot remove ${root}/${sofar.uid}: ${(x as Error).message}`),
      );
    }
    if (sofar.user) await deleteUser(sofar.user).catch((x: unknown) => problems.push(ensureError(x).message));
    const msg = `cannot prepare the VMM user for sandbox ${sandboxId}: ${first.message}`;
    throw new CorralError(first.code, problems.length ? `${msg}; rollback failed: ${problems.join('; ')}` : msg, {
      cause: e,
      retryable: first.retryable,
    });
  }
}

/**
 * Remove `/run/user/<uid>` and the user (`userdel -f`, 5 attempts). A missing user is success
 * (`removed: false`). Refuses names outside Corral's prefix, and a name whose uid changed.
 */
export async function removeVmmUser(
  user: string,
  uid: number,
  o: RemoveVmmUserOptions = {},
): Promise<{ removed: boolean }> {
  if (typeof user !== 'string' || !user.startsWith(VMM_USER_PREFIX) || !NAME.test(user)) {
    throw err.invalid(`refusing to remove ${JSON.stringify(user)}: not a Corral VMM user (${VMM_USER_PREFIX}...)`);
  }
  checkId(uid, 'uid');
  const root = checkRoot(o.runUserRoot ?? '/run/user');
  o.signal?.throwIfAborted();

  const entry = await getentPasswd(user);
  if (entry && entry.uid !== uid)
    throw err.precondition(`refusing to remove ${user}: it has uid ${entry.uid}, not ${uid}`);
  // The uid may have been reused by a newer user since: then its runtime dir is not ours to remove.
  const owner = entry ?? (await getentPasswd(String(uid)));
  if (!owner || owner.name === user) {
    try {
      await rm(posix.join(root, String(uid)), { recursive: true, force: true });
    } catch (e) {
      throw err.internal(`cannot remove ${root}/${uid}: ${(e as Error).message}`, e);
    }
  }
  o.signal?.throwIfAborted();
  return { removed: entry ? await deleteUser(user, o.signal) : false };
}

/**
 * `createUser` and `removeUser` for the hypervisor worker's handler table (requests validated in validate.ts).
 * A `removeUser` without a user name (its creation was never confirmed) removes whatever user was made for
 * the sandboxId on this node.
 */
export function vmmUserHandlers(
  o: { runUserRoot?: string; kvmDevice?: string; node?: string } = {},
): Pick<OpHandlers<'hypervisor'>, 'createUser' | 'removeUser'> {
  return {
    createUser: async (req, ctx) => createVmmUser(parseCreateUser(req).sandboxId, { ...o, signal: ctx.signal }),
    removeUser: async (req, ctx) => {
      const a = parseRemoveUser(req);
      const rm = { runUserRoot: o.runUserRoot, signal: ctx.signal };
      if (a.user !== undefined) return removeVmmUser(a.user, a.uid, rm);
      let removed = false;
      for (const u of await vmmUsersOfSandbox(a.sandboxId, o.node))
        removed = (await removeVmmUser(u.name, u.uid, rm)).removed || removed;
      return { removed };
    },
  };
}

/** For tests and scans: is a user of that name in the passwd database? */
export async function vmmUserExists(user: string): Promise<boolean> {
  return (await getentPasswd(user)) !== undefined;
}
