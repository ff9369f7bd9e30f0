/**
 * The rootless VMM user (Kata §7) with real useradd/userdel, directly and through a worker over NATS.
 * Every user a test creates (or was about to create) is checked gone afterwards, with its runtime dir.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from '../../src/bus/rpc.ts';
import { subjects } from '../../src/bus/subjects.ts';
import { CorralError, err } from '../../src/errors.ts';
import { runWorker, type OpHandler } from '../../src/workers/harness.ts';
import type { VmmUser } from '../../src/domain/ops.ts';
import {
  VMM_USER_COMMENT,
  createVmmUser,
  removeVmmUser,
  vmmUserExists,
  vmmUserHandlers,
  type VmmUserStep,
} from '../../src/workers/hypervisor/vmm-user.ts';
import { natsServer, type TestNats } from '../helpers/nats.ts';

/** Users and runtime dirs this file created or may have created: all must be gone after each test. */
const touched: { user?: string; uid?: number; runtimeDir?: string }[] = [];
const track = (u: Partial<VmmUser>) => {
  touched.push({ ...u });
  return u;
};

function passwd(user: string): string[] | undefined {
  try {
    return execFileSync('getent', ['passwd', user], { encoding: 'utf8' }).trim().split(':');
  } catch {
    return undefined;
  }
}

async function expectFailure(p: Promise<unknown>): Promise<CorralError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CorralError) return e;
    throw e;
  }
  throw new Error('expected a failure');
}

afterEach(() => {
  const leaks: string[] = [];
  for (const t of touched.splice(0)) {
    if (t.user && passwd(t.user)) {
      leaks.push(`user ${t.user}`);
      try {
        execFileSync('userdel', ['-f', t.user], { stdio: 'ignore' });
      } catch {
        /* reported */
      }
    }
    if (t.runtimeDir && existsSync(t.runtimeDir)) {
      leaks.push(`dir ${t.runtimeDir}`);
      rmSync(t.runtimeDir, { recursive: true, force: true });
    }
  }
  expect(leaks, 'users or runtime dirs left behind').toEqual([]);
});

describe('createVmmUser / removeVmmUser', () => {
  it('creates corral-NNNNN with /run/user/<uid> (0750, owned by it) and the kvm group; remove takes both', async () => {
    const u = await createVmmUser('sandbox-1');
    track(u);
    expect(u.user).toMatch(/^corral-\d{5}$/);
    const entry = passwd(u.user);
    expect(entry).toBeDefined();
    const [name, , uid, gid, gecos, , shell] = entry!;
    expect(name).toBe(u.user);
    expect(Number(uid)).toBe(u.uid);
    expect(Number(gid)).toBe(u.gid);
    expect(u.uid).toBeGreaterThan(0);
    expect(gecos).toBe(`${VMM_USER_COMMENT} of sandbox sandbox-1`);
    expect(shell).toMatch(/\/nologin$/);
    expect(existsSync(`/home/${u.user}`)).toBe(false); // -M

    expect(u.runtimeDir).toBe(`/run/user/${u.uid}`);
    const st = statSync(u.runtimeDir);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o750);
    expect([st.uid, st.gid]).toEqual([u.uid, u.gid]);

    // The gid of /dev/kvm, except the root group, which is never handed to the VMM (see vmm-user.ts).
    const kvmGid = existsSync('/dev/kvm') ? statSync('/dev/kvm').gid : undefined;
    expect(u.groups).toEqual(kvmGid === undefined || kvmGid === 0 ? [] : [kvmGid]);
    expect(process.env.XDG_RUNTIME_DIR).not.toBe(u.runtimeDir); // nothing process-wide

    expect(await removeVmmUser(u.user, u.uid)).toEqual({ removed: true });
    expect(passwd(u.user)).toBeUndefined();
    expect(existsSync(u.runtimeDir)).toBe(false);
    // Removing again is success.
    expect(await removeVmmUser(u.user, u.uid)).toEqual({ removed: false });
  });

  it('creates and removes several users at once', async () => {
    const users = await Promise.all(Array.from({ length: 6 }, (_, i) => createVmmUser(`sandbox-par-${i}`)));
    users.forEach(track);
    expect(new Set(users.map((u) => u.user)).size).toBe(6);
    expect(new Set(users.map((u) => u.uid)).size).toBe(6);
    for (const u of users) expect(statSync(u.runtimeDir).uid).toBe(u.uid);
    expect(await Promise.all(users.map((u) => removeVmmUser(u.user, u.uid)))).toEqual(
      users.map(() => ({ removed: true })),
    );
    for (const u of users) expect(passwd(u.user)).toBeUndefined();
  });

  it('puts the KVM device group into groups when it has one, and none without a device', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-kvm-'));
    try {
      const fakeKvm = join(dir, 'kvm');
      writeFileSync(fakeKvm, '');
      chownSync(fakeKvm, 0, 4242);
      const withKvm = await createVmmUser('sandbox-kvm', { kvmDevice: fakeKvm });
      track(withKvm);
      expect(withKvm.groups).toEqual([4242]);
      await removeVmmUser(withKvm.user, withKvm.uid);

      const noKvm = await createVmmUser('sandbox-nokvm', { kvmDevice: join(dir, 'absent') });
      track(noKvm);
      expect(noKvm.groups).toEqual([]);
      await removeVmmUser(noKvm.user, noKvm.uid);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replaces a leftover runtime dir of the same uid', async () => {
    // A private run-user root, pre-filled with stale dirs for every uid useradd may pick.
    const runUserRoot = mkdtempSync(join(tmpdir(), 'corral-runuser-'));
    try {
      for (let uid = 1000; uid < 1300; uid++) {
        mkdirSync(join(runUserRoot, String(uid)), { mode: 0o777 });
        writeFileSync(join(runUserRoot, String(uid), 'stale'), 'old');
      }
      const u = await createVmmUser('sandbox-stale', { runUserRoot });
      track(u);
      expect(u.uid).toBeGreaterThanOrEqual(1000);
      expect(u.uid).toBeLessThan(1300); // so a stale dir was there to replace
      expect(u.runtimeDir).toBe(join(runUserRoot, String(u.uid)));
      expect(readdirSync(u.runtimeDir)).toEqual([]);
      expect(statSync(u.runtimeDir).mode & 0o7777).toBe(0o750);
      await removeVmmUser(u.user, u.uid, { runUserRoot });
      expect(existsSync(u.runtimeDir)).toBe(false);
    } finally {
      rmSync(runUserRoot, { recursive: true, force: true });
    }
  });

  const steps: VmmUserStep[] = ['useradd', 'lookup', 'runtimeDir', 'chown', 'kvm', 'done'];
  it.each(steps)('a failure at step %s leaves neither the user nor the runtime dir', async (failAt) => {
    let sofar: Partial<VmmUser> = {};
    const e = await expectFailure(
      createVmmUser('sandbox-fail', {
        onStep: (step, s) => {
          sofar = track(s);
          if (step === failAt) throw err.unavailable(`injected ${step} failure`);
        },
      }),
    );
    expect(e.code).toBe('Unavailable'); // the original error is what the caller sees
    expect(e.message).toContain(`injected ${failAt} failure`);
    expect(e.message).not.toMatch(/rollback failed/);
    if (failAt === 'useradd') expect(sofar.user).toBeUndefined();
    else expect(sofar.user).toMatch(/^corral-/);
    if (sofar.user) expect(passwd(sofar.user)).toBeUndefined();
    if (sofar.uid !== undefined) {
      const dir = `/run/user/${sofar.uid}`;
      track({ runtimeDir: dir });
      expect(existsSync(dir)).toBe(false);
    }
  });

  it('a deadline firing in the middle rolls back and answers Timeout', async () => {
    const ac = new AbortController();
    let sofar: Partial<VmmUser> = {};
    const e = await expectFailure(
      createVmmUser('sandbox-deadline', {
        signal: ac.signal,
        onStep: (step, s) => {
          sofar = track(s);
          if (step === 'chown') ac.abort(err.timeout('hypervisor.createUser passed its deadline'));
        },
      }),
    );
    expect(e.code).toBe('Timeout');
    expect(sofar.user).toBeDefined();
    expect(passwd(sofar.user!)).toBeUndefined();
    track({ runtimeDir: `/run/user/${sofar.uid}` });
    expect(existsSync(`/run/user/${sofar.uid}`)).toBe(false);

    const gone = new AbortController();
    gone.abort(err.timeout('already late'));
    let called = false;
    const e2 = await expectFailure(
      createVmmUser('sandbox-late', {
        signal: gone.signal,
        onStep: () => {
          called = true;
        },
      }),
    );
    expect(e2.code).toBe('Timeout');
    expect(called).toBe(false);
  });

  it('refuses to remove users that are not Corral VMM users, and bad uids', async () => {
    for (const name of ['root', 'nats', 'kata-12345', 'corral-', 'corral-../../etc', 'corral-a b', '']) {
      expect((await expectFailure(removeVmmUser(name, 1234))).code, name).toBe('InvalidArgument');
    }
    expect(passwd('root')).toBeDefined();
    for (const uid of [0, -1, 1.5, 2 ** 32, Number.NaN]) {
      expect((await expectFailure(removeVmmUser('corral-00001', uid))).code, String(uid)).toBe('InvalidArgument');
    }
  });

  it('refuses to remove a user whose uid is not the one given (uid reuse, Kata #5155)', async () => {
    const u = await createVmmUser('sandbox-uid');
    track(u);
    const e = await expectFailure(removeVmmUser(u.user, u.uid + 1));
    expect(e.code).toBe('FailedPrecondition');
    expect(passwd(u.user)).toBeDefined();
    expect(existsSync(u.runtimeDir)).toBe(true);
    expect(await removeVmmUser(u.user, u.uid)).toEqual({ removed: true });
  });
});

describe('createUser / removeUser through a worker over NATS', () => {
  let nats: TestNats;
  const node = 'vmmuser-test';
  const calls: string[] = [];
  beforeAll(async () => {
    nats = await natsServer();
    const inner = vmmUserHandlers();
    const counted =
      (name: string, h: OpHandler): OpHandler =>
      (req, ctx) => {
        calls.push(name);
        return h(req, ctx);
      };
    runWorker({
      nc: nats.nc,
      node,
      kind: 'hypervisor',
      handlers: {
        createUser: counted('createUser', inner.createUser),
        removeUser: counted('removeUser', inner.removeUser),
      },
    });
  });
  afterAll(async () => {
    await nats?.cleanup();
  });

  const call = <T>(op: string, body: Record<string, unknown>) =>
    request<T>(nats.nc, subjects.worker(node, 'hypervisor', op), body, 30_000);

  it('creates once per opId and removes', async () => {
    const body = { opId: 'create-1', deadlineMs: Date.now() + 20_000, sandboxId: 'sb-nats' };
    const [a, b] = await Promise.all([call<VmmUser>('createUser', body), call<VmmUser>('createUser', body)]);
    track(a);
    const c = await call<VmmUser>('createUser', body);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(calls.filter((x) => x === 'createUser')).toHaveLength(1);
    expect(await vmmUserExists(a.user)).toBe(true);
    expect(statSync(a.runtimeDir).mode & 0o7777).toBe(0o750);

    const rm = { opId: 'remove-1', deadlineMs: Date.now() + 20_000, user: a.user, uid: a.uid };
    expect(await call('removeUser', rm)).toEqual({ removed: true });
    expect(await call('removeUser', { ...rm, opId: 'remove-2' })).toEqual({ removed: false });
    expect(await vmmUserExists(a.user)).toBe(false);
    expect(existsSync(a.runtimeDir)).toBe(false);
  });

  it('answers bad requests with InvalidArgument', async () => {
    const late = Date.now() + 20_000;
    const cases: Record<string, unknown>[] = [
      { opId: 'bad-1', deadlineMs: late },
      { opId: 'bad-2', deadlineMs: late, sandboxId: 7 },
    ];
    for (const body of cases) {
      const e = await expectFailure(call('createUser', body));
      expect(e.code).toBe('InvalidArgument');
    }
    for (const body of [
      { opId: 'bad-3', deadlineMs: late, user: 'root', uid: 0 },
      { opId: 'bad-4', deadlineMs: late, user: 'corral-12345', uid: '1000' },
      { opId: 'bad-5', deadlineMs: late, uid: 1000 },
    ]) {
      const e = await expectFailure(call('removeUser', body));
      expect(e.code).toBe('InvalidArgument');
    }
    expect(passwd('root')).toBeDefined();
  });
});
