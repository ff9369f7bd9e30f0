/**
 * Valid Task API request bodies, one arbitrary per verb (docs/api.md "Task API"), as the agent receives
 * them (through the codec). The fuzz files break them one field at a time (wire.ts `broken`).
 */
import fc from 'fast-check';
import { throughCodec } from './wire.ts';

export const taskId = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,24}$/);
export const execId = fc.stringMatching(/^[A-Za-z0-9]{1,6}(?:[._-][A-Za-z0-9]{1,6}){0,3}$/);
export const absPath = fc.stringMatching(/^(?:\/[a-z0-9._-]{1,8}){1,4}$/);
const requestId = fc.uuid();
const optExec = { execId, requestId };

const mount = fc.record({
  type: fc.constantFrom('overlay', 'bind', 'tmpfs', 'ext4'),
  source: absPath,
  options: fc.array(fc.constantFrom('ro', 'rbind', 'size=1m', 'lowerdir=/a:/b'), { maxLength: 3 }),
});

export const createBody = fc.record(
  {
    id: taskId,
    bundle: absPath,
    rootfs: fc.array(mount, { maxLength: 3 }),
    terminal: fc.boolean(),
    stdin: absPath,
    stdout: absPath,
    stderr: absPath,
    checkpoint: fc.constant(''),
    parentCheckpoint: fc.constant(''),
    options: fc.record({ configPath: absPath }, { requiredKeys: [] }),
    requestId,
  },
  { requiredKeys: ['id'] },
);

const signal = fc.oneof(
  fc.integer({ min: 1, max: 64 }),
  fc.constantFrom('SIGKILL', 'TERM', 'sigterm', 'HUP', '9', '15'),
);
const spec = fc.record(
  {
    args: fc.array(fc.stringMatching(/^[a-z/-]{1,8}$/), { minLength: 1, maxLength: 3 }),
    env: fc.array(fc.stringMatching(/^[A-Z]{1,4}=[a-z]{0,4}$/), { maxLength: 3 }),
    cwd: absPath,
    user: fc.record(
      { uid: fc.nat(65535), gid: fc.nat(65535), additionalGids: fc.array(fc.nat(65535), { maxLength: 3 }) },
      { requiredKeys: [] },
    ),
    terminal: fc.boolean(),
  },
  { requiredKeys: ['args'] },
);
const limits = fc.record(
  {
    memory: fc.record({ limit: fc.integer({ min: -1, max: 2 ** 40 }) }, { requiredKeys: [] }),
    cpu: fc.record(
      { quota: fc.constantFrom(-1, 0, 1000, 50_000), period: fc.constantFrom(0, 1000, 100_000) },
      { requiredKeys: [] },
    ),
    pids: fc.record({ limit: fc.integer({ min: -1, max: 4096 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

/** Verb → a valid body. */
export const verbBodies = {
  create: createBody,
  start: fc.record({ id: taskId, ...optExec }, { requiredKeys: ['id'] }),
  delete: fc.record({ id: taskId, ...optExec }, { requiredKeys: ['id'] }),
  state: fc.record({ id: taskId, execId }, { requiredKeys: ['id'] }),
  closeIO: fc.record({ id: taskId, execId }, { requiredKeys: ['id'] }),
  kill: fc.record({ id: taskId, signal, all: fc.boolean(), ...optExec }, { requiredKeys: ['id'] }),
  wait: fc.record({ id: taskId, timeoutMs: fc.nat(7 * 24 * 3600_000), execId }, { requiredKeys: ['id'] }),
  resize: fc.record(
    { id: taskId, execId, width: fc.integer({ min: 1, max: 65535 }), height: fc.integer({ min: 1, max: 65535 }) },
    { requiredKeys: ['id', 'width', 'height'] },
  ),
  exec: fc.record(
    { id: taskId, execId, spec, terminal: fc.boolean(), stdin: fc.oneof(fc.boolean(), absPath) },
    { requiredKeys: ['id', 'execId', 'spec'] },
  ),
  update: fc.record({ id: taskId, resources: limits }),
  pause: fc.record({ id: taskId }),
  resume: fc.record({ id: taskId }),
  pids: fc.record({ id: taskId }),
  stats: fc.record({ id: taskId }),
} as const;

export type Verb = keyof typeof verbBodies;
export const VERBS = Object.keys(verbBodies) as Verb[];

/** A valid body for `verb`, as decoded from the wire. */
export const bodyOf = (verb: Verb): fc.Arbitrary<unknown> =>
  (verbBodies[verb] as fc.Arbitrary<unknown>).map(throughCodec);
