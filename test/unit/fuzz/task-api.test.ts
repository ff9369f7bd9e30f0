/**
 * The Task API handlers (src/agent/task-api.ts, process-verbs.ts) on a node that holds no task, fed any
 * decoded body and valid bodies with one field broken: every verb that names a task answers
 * InvalidArgument exactly when its parser refuses the body (with the parser's message) and NotFound
 * ("container does not exist <id>") otherwise; `create` reaches the machine only for a valid request on
 * a valid bundle; `createInline` never leaves a bundle directory behind when it fails; `list` and
 * `shutdown` answer whatever the body.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, vi } from 'vitest';
import { createRules } from '../../../src/agent/create-rules.ts';
import type { Settings } from '../../../src/agent/settings.ts';
import { taskApi } from '../../../src/agent/task-api.ts';
import type { TaskRuntime } from '../../../src/agent/task-runtime.ts';
import { TaskTable } from '../../../src/agent/task-table.ts';
import { parseExec } from '../../../src/bus/exec-requests.ts';
import {
  obj,
  parseCreate,
  parseKill,
  parseProcessRef,
  parseResize,
  parseWait,
  taskId,
} from '../../../src/bus/task-requests.ts';
import { updateLimits } from '../../../src/kata/resources.ts';
import { verifyContainerId } from '../../../src/kata/ids.ts';
import { ociSpec } from './oci-specs.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { bodyOf, createBody, VERBS, type Verb } from './task-bodies.ts';
import { settle, verdict } from './verdict.ts';
import { broken, throughCodec, wireValue } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

/** Thrown by the stub runtime where a real one would start the task's machine: the request was accepted. */
class Accepted extends Error {}

const root = mkdtempSync(join(tmpdir(), 'crl-fuzz-api-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const bundles = join(root, 'bundles');
const inlineRoot = join(bundles, 'inline');
const spec = { process: { args: ['/bin/true'] }, root: { path: 'rootfs' }, linux: { resources: {} } };
const bundle = (name: string, config?: unknown) => {
  mkdirSync(join(bundles, name), { recursive: true });
  if (config !== undefined)
    writeFileSync(join(bundles, name, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return join(bundles, name);
};
const podSpec = {
  ...spec,
  annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'sb1' },
};
const GOOD = bundle('good', spec);
const BUNDLES = [
  GOOD,
  bundle('pod', podSpec),
  bundle('nospec'),
  bundle('badspec', '{"process":'),
  join(bundles, 'missing'),
  '/etc',
  'relative/bundle',
  '',
];
mkdirSync(inlineRoot);

const settings = { node: 'n1', bundleRoots: [bundles] } as Partial<Settings> as Settings;
/** Only what the handlers touch of a TaskRuntime (a node without tasks never reaches the rest). */
const rt = {
  d: { rules: createRules(settings), settings, inlineBundleRoot: inlineRoot },
  tasks: new TaskTable(() => undefined),
  expect: () => undefined,
  forget: () => undefined,
  spawn: () => {
    throw new Accepted('the request reached the task machine');
  },
} as unknown as TaskRuntime;
const api = taskApi(rt);
const reply = () => {
  throw new Error('no verb may answer through reply on a node without tasks');
};

/** What each verb parses before it looks its task up. */
const PARSE: Record<Exclude<Verb, 'create'>, (b: unknown) => { id: string }> = {
  start: parseProcessRef,
  delete: parseProcessRef,
  state: parseProcessRef,
  closeIO: parseProcessRef,
  kill: parseKill,
  wait: parseWait,
  resize: parseResize,
  exec: parseExec,
  update: (b) => (updateLimits(obj(b, 'request').resources), { id: taskId(b) }),
  pause: (b) => ({ id: taskId(b) }),
  resume: (b) => ({ id: taskId(b) }),
  pids: (b) => ({ id: taskId(b) }),
  stats: (b) => ({ id: taskId(b) }),
};
const LOOKUPS = VERBS.filter((v): v is Exclude<Verb, 'create'> => v !== 'create');

async function refusedLikeItsParser(verb: Exclude<Verb, 'create'>, body: unknown) {
  const handler = api[verb]!;
  const r = await settle(() => handler(body, reply), { codes: ['InvalidArgument', 'NotFound'] });
  expect(r.ok, `${verb} answered on a node without tasks`).toBe(false);
  if (r.ok) return;
  const p = verdict(() => PARSE[verb](body));
  if (p.ok) expect(r.error).toMatchObject({ code: 'NotFound', message: `container does not exist ${p.value.id}` });
  else expect(r.error).toMatchObject({ code: 'InvalidArgument', message: p.error.message });
}

describe.each(LOOKUPS)('%s on a node without tasks', (verb) => {
  test.prop([wireValue()], { numRuns: RUNS })('any body: InvalidArgument as its parser, else NotFound', (body) =>
    refusedLikeItsParser(verb, body),
  );
  test.prop([broken(bodyOf(verb))], { numRuns: RUNS })(
    'a valid body with one field broken: InvalidArgument as its parser, else NotFound',
    ({ value }) => refusedLikeItsParser(verb, value),
  );
});

const accepting = async (run: () => Promise<unknown>) => {
  try {
    return await run();
  } catch (e) {
    if (e instanceof Accepted) return 'accepted';
    throw e;
  }
};

describe('create on a node without tasks', () => {
  const onBundle = fc
    .tuple(createBody, fc.constantFrom(...BUNDLES))
    .map(([b, at]) => throughCodec({ ...b, bundle: at }));
  const bodies = fc.oneof(
    wireValue(),
    broken(onBundle).map((b) => b.value),
    onBundle,
  );
  test.prop([bodies], { numRuns: RUNS })(
    'reaches the machine only for a valid request on a valid bundle; else InvalidArgument or NotFound',
    async (body) => {
      const r = await settle(() => accepting(() => api.create!(body, reply)), {
        codes: ['InvalidArgument', 'NotFound'],
      });
      if (!r.ok) return;
      expect(r.value).toBe('accepted');
      const req = parseCreate(body);
      expect(verifyContainerId(req.id)).toBe(req.id);
      expect(req.bundle).toBe(GOOD);
    },
  );
});

describe('createInline on a node without tasks', () => {
  const inline = fc
    .tuple(createBody, ociSpec, fc.option(fc.record({ vcpus: fc.nat(4), memoryMiB: fc.nat(4096), ref: fc.string() })))
    .map(([{ bundle: _b, ...b }, s, reservation]) => throughCodec({ ...b, spec: s, reservation, placement: {} }));
  const bodies = fc.oneof(
    wireValue(),
    broken(inline).map((b) => b.value),
    inline,
  );
  test.prop([bodies], { numRuns: RUNS })(
    'accepted, or InvalidArgument / NotFound, and never a bundle left behind',
    async (body) => {
      rmSync(inlineRoot, { recursive: true, force: true }); // what an earlier (failed) case left
      mkdirSync(inlineRoot);
      await settle(() => accepting(() => api.createInline!(body, reply)), {
        codes: ['InvalidArgument', 'NotFound'],
      });
      expect(readdirSync(inlineRoot), 'bundle directories left in the inline root').toEqual([]);
    },
  );

  test('regression: a failed create whose spec.root.path is not "rootfs" leaves no bundle', async () => {
    const body = { id: 'pod-c1', spec: { ...podSpec, root: { path: 'x' } } };
    await expect(api.createInline!(body, reply)).rejects.toMatchObject({ code: 'NotFound' });
    expect(existsSync(join(inlineRoot, body.id))).toBe(false);
  });
  test('regression: a spec whose root.path holds NUL is InvalidArgument and leaves no bundle', async () => {
    const body = { id: 'nul-root', spec: { ...spec, root: { path: 'a\0b' } } };
    await expect(api.createInline!(body, reply)).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(existsSync(join(inlineRoot, 'nul-root'))).toBe(false);
  });
  test('regression: a spec holding a 64-bit integer (bigint) is InvalidArgument and leaves no bundle', async () => {
    const limit = 2n ** 63n; // a MessagePack int64 beyond 2^53
    const body = throughCodec({ id: 'big-spec', spec: { ...spec, linux: { resources: { memory: { limit } } } } });
    await expect(api.createInline!(body, reply)).rejects.toMatchObject({ code: 'InvalidArgument' });
    expect(existsSync(join(inlineRoot, 'big-spec'))).toBe(false);
  });
});

describe('list and shutdown on a node without tasks', () => {
  test.prop([wireValue()], { numRuns: RUNS })('answer whatever the body', async (body) => {
    expect(await api.list!(body, reply)).toEqual({ tasks: [] });
    expect(await api.shutdown!(body, reply)).toEqual({});
  });
});
