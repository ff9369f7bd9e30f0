import { describe, expect, it } from 'vitest';
import { envForProcess, parseSpec, readSpec } from '../../../src/kata/oci.ts';
import { expectError } from './expect-error.ts';
import { memFs } from './mem-fs.ts';

/** A minimal valid spec; `patch` replaces top-level keys (undefined deletes). */
function spec(patch: Record<string, unknown> = {}): string {
  const base: Record<string, unknown> = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['sh'], env: ['PATH=/bin'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { resources: {} },
  };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return JSON.stringify(base);
}
const proc = (p: Record<string, unknown>) =>
  spec({ process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/', ...p } });

describe('parseSpec: structure (§5.2)', () => {
  it('parses the fields Corral uses, with Go zero values for absent ones', () => {
    const s = parseSpec(spec());
    expect(s.ociVersion).toBe('1.0.2');
    expect(s.process).toMatchObject({
      terminal: false,
      user: { uid: 0, gid: 0, additionalGids: [] },
      args: ['sh'],
      cwd: '/',
      noNewPrivileges: false,
    });
    expect(s.root).toEqual({ path: 'rootfs', readonly: false });
    expect(s.mounts).toEqual([]);
    expect(s.annotations).toEqual({});
    expect(s.linux).toEqual({ resources: {}, namespaces: [], devices: [] });
    expect(s.hooks.prestart).toEqual([]);
    expect(Object.isFrozen(s.process.args)).toBe(true);
  });

  it('parses a full spec', () => {
    const s = parseSpec(
      spec({
        process: {
          terminal: true,
          user: { uid: 1000, gid: 1001, additionalGids: [5, 6] },
          args: ['a', 'b'],
          env: ['A=1'],
          cwd: '/w',
          noNewPrivileges: true,
          capabilities: { bounding: ['CAP_KILL'] },
        },
        root: { path: '/r', readonly: true },
        mounts: [{ destination: '/d', type: 'bind', source: '/s', options: ['rbind', 'ro'] }],
        annotations: { a: 'b' },
        linux: {
          resources: { cpu: { quota: 150000, period: 100000, shares: 1024 }, memory: { limit: 536870912 } },
          namespaces: [{ type: 'network', path: '/var/run/netns/x' }, { type: 'pid' }],
          devices: [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229, fileMode: 438, uid: 0, gid: 0 }],
        },
        hooks: {
          prestart: [{ path: '/bin/hook', args: ['hook', 'x'], env: ['E=1'], timeout: 5 }],
          poststop: [{ path: '/bin/p' }],
        },
      }),
    );
    expect(s.process.user.additionalGids).toEqual([5, 6]);
    expect(s.root).toEqual({ path: '/r', readonly: true });
    expect(s.mounts[0]).toEqual({ destination: '/d', type: 'bind', source: '/s', options: ['rbind', 'ro'] });
    expect(s.linux.resources).toEqual({
      cpu: { quota: 150000, period: 100000, shares: 1024 },
      memory: { limit: 536870912 },
    });
    expect(s.linux.namespaces).toEqual([
      { type: 'network', path: '/var/run/netns/x' },
      { type: 'pid', path: '' },
    ]);
    expect(s.linux.devices[0]).toEqual({
      type: 'c',
      path: '/dev/fuse',
      major: 10,
      minor: 229,
      fileMode: 438,
      uid: 0,
      gid: 0,
    });
    expect(s.hooks.prestart[0]).toEqual({ path: '/bin/hook', args: ['hook', 'x'], env: ['E=1'], timeout: 5 });
    expect(s.hooks.poststop[0]).toEqual({ path: '/bin/p', args: [], env: [] });
  });

  it('keeps only present resource fields (sizing must know quota/period presence)', () => {
    const s = parseSpec(spec({ linux: { resources: { cpu: { quota: 5 } } } }));
    expect(s.linux.resources).toEqual({ cpu: { quota: 5 } });
    expect('period' in (s.linux.resources.cpu ?? {})).toBe(false);
  });

  it('malformed JSON → InvalidArgument carrying the parser message', async () => {
    const e = await expectError(
      () => parseSpec('{"process": '),
      'InvalidArgument',
      /^config\.json is not valid JSON: /,
    );
    expect(e.message.length).toBeGreaterThan('config.json is not valid JSON: '.length);
  });

  it.each(['[]', 'null', '"x"', '3'])('a non-object document (%s) → InvalidArgument', async (text) => {
    await expectError(() => parseSpec(text), 'InvalidArgument', 'config.json: the document must be a JSON object');
  });

  it.each([undefined, null])('process %j → "ContainerCapabilities, Process is nil"', async (p) => {
    await expectError(
      () => parseSpec(spec({ process: p })),
      'InvalidArgument',
      'ContainerCapabilities, Process is nil',
    );
  });

  it('missing root → InvalidArgument (Kata panics)', async () => {
    await expectError(
      () => parseSpec(spec({ root: undefined })),
      'InvalidArgument',
      'config.json: missing root section',
    );
  });

  it('missing linux → "missing Linux section" (Kata panics in ContainerConfig)', async () => {
    await expectError(() => parseSpec(spec({ linux: undefined })), 'InvalidArgument', 'missing Linux section');
  });

  it('missing linux.resources → InvalidArgument (Kata panics)', async () => {
    await expectError(
      () => parseSpec(spec({ linux: {} })),
      'InvalidArgument',
      'config.json: missing linux.resources section',
    );
  });
});

describe('parseSpec: wrong types name the field', () => {
  it.each([
    [proc({ args: 'sh' }), 'process.args must be an array'],
    [proc({ args: ['sh', 1] }), 'process.args[1] must be a string'],
    [proc({ args: [null] }), 'process.args[0] must be a string'],
    [proc({ env: [{}] }), 'process.env[0] must be a string'],
    [proc({ cwd: 1 }), 'process.cwd must be a string'],
    [proc({ terminal: 'yes' }), 'process.terminal must be a boolean'],
    [proc({ noNewPrivileges: 1 }), 'process.noNewPrivileges must be a boolean'],
    [proc({ user: 'root' }), 'process.user must be an object'],
    [proc({ user: { uid: -1, gid: 0 } }), 'process.user.uid must be a non-negative integer (uint32)'],
    [proc({ user: { uid: 1.5, gid: 0 } }), 'process.user.uid must be a non-negative integer (uint32)'],
    [proc({ user: { uid: '0', gid: 0 } }), 'process.user.uid must be a non-negative integer (uint32)'],
    [proc({ user: { uid: 4294967296, gid: 0 } }), 'process.user.uid must be a non-negative integer (uint32)'],
    [proc({ user: { uid: 0, gid: -2 } }), 'process.user.gid must be a non-negative integer (uint32)'],
    [
      proc({ user: { uid: 0, gid: 0, additionalGids: [1, -1] } }),
      'process.user.additionalGids[1] must be a non-negative integer (uint32)',
    ],
    [
      proc({ user: { uid: 0, gid: 0, additionalGids: [null] } }),
      'process.user.additionalGids[0] must be a non-negative integer (uint32)',
    ],
    [proc({ user: { uid: 0, gid: 0, additionalGids: 5 } }), 'process.user.additionalGids must be an array'],
    [spec({ root: 'rootfs' }), 'root must be an object'],
    [spec({ root: { path: 5 } }), 'root.path must be a string'],
    [spec({ root: { path: 'r', readonly: 'no' } }), 'root.readonly must be a boolean'],
    [spec({ mounts: {} }), 'mounts must be an array'],
    [spec({ mounts: [{ destination: '/d', options: 'ro' }] }), 'mounts[0].options must be an array'],
    [spec({ mounts: [{ destination: 1 }] }), 'mounts[0].destination must be a string'],
    [spec({ annotations: { a: 1 } }), 'annotations["a"] must be a string'],
    [spec({ annotations: [] }), 'annotations must be an object'],
    [spec({ ociVersion: 1 }), 'ociVersion must be a string'],
    [spec({ linux: 'x' }), 'linux must be an object'],
    [spec({ linux: { resources: { cpu: { quota: 1.5 } } } }), 'linux.resources.cpu.quota must be an integer'],
    [spec({ linux: { resources: { cpu: { quota: 2 ** 60 } } } }), 'linux.resources.cpu.quota must be an integer'],
    [
      spec({ linux: { resources: { cpu: { period: -1 } } } }),
      'linux.resources.cpu.period must be a non-negative integer',
    ],
    [
      spec({ linux: { resources: { cpu: { shares: 'x' } } } }),
      'linux.resources.cpu.shares must be a non-negative integer',
    ],
    [spec({ linux: { resources: { memory: { limit: '1G' } } } }), 'linux.resources.memory.limit must be an integer'],
    [spec({ linux: { resources: {}, namespaces: [{ type: 1 }] } }), 'linux.namespaces[0].type must be a string'],
    [
      spec({ linux: { resources: {}, devices: [{ type: 'c', path: '/dev/x', major: 'a' }] } }),
      'linux.devices[0].major must be an integer',
    ],
    [
      spec({ linux: { resources: {}, devices: [{ type: 'c', path: '/dev/x', fileMode: -1 }] } }),
      'linux.devices[0].fileMode must be a non-negative integer (uint32)',
    ],
    [spec({ hooks: { prestart: {} } }), 'hooks.prestart must be an array'],
    [spec({ hooks: { poststart: [{ path: 1 }] } }), 'hooks.poststart[0].path must be a string'],
    [spec({ hooks: { poststop: [{ path: '/p', timeout: 'x' }] } }), 'hooks.poststop[0].timeout must be an integer'],
  ])('%s → %s', async (text, msg) => {
    await expectError(() => parseSpec(text), 'InvalidArgument', `config.json: ${msg}`);
  });

  it('negative quota and memory limit (-1 = unlimited) are valid', () => {
    const s = parseSpec(spec({ linux: { resources: { cpu: { quota: -1, period: 100000 }, memory: { limit: -1 } } } }));
    expect(s.linux.resources).toEqual({ cpu: { quota: -1, period: 100000 }, memory: { limit: -1 } });
  });
});

describe('parseSpec: devices (ContainerConfig rules)', () => {
  const dev = (d: Record<string, unknown>) => spec({ linux: { resources: {}, devices: [d] } });
  it.each(['c', 'b', 'u', 'p'])('device type %s is accepted', (t) => {
    expect(parseSpec(dev({ type: t, path: '/dev/x' })).linux.devices[0]?.type).toBe(t);
  });
  it('an unknown device type → "Unexpected Device Type X for device P"', async () => {
    await expectError(
      () => parseSpec(dev({ type: 'x', path: '/dev/x' })),
      'InvalidArgument',
      'Unexpected Device Type x for device /dev/x',
    );
  });
  it('the type is checked before the path', async () => {
    await expectError(() => parseSpec(dev({ type: '' })), 'InvalidArgument', 'Unexpected Device Type  for device ');
  });
  it('an empty path → "Path cannot be empty for device"', async () => {
    await expectError(() => parseSpec(dev({ type: 'c' })), 'InvalidArgument', 'Path cannot be empty for device');
  });
});

describe('parseSpec: capabilities in both formats (§5.2)', () => {
  const caps = (c: unknown) => parseSpec(proc({ capabilities: c })).process.capabilities;
  it('object form (rc5+) fills the named sets and leaves the rest empty', () => {
    expect(caps({ bounding: ['CAP_A'], effective: ['CAP_B'], permitted: [] })).toEqual({
      bounding: ['CAP_A'],
      effective: ['CAP_B'],
      inheritable: [],
      permitted: [],
      ambient: [],
    });
  });
  it('object form: unknown keys holding arrays are ignored', () => {
    expect(caps({ bounding: ['CAP_A'], future: ['X'] }).bounding).toEqual(['CAP_A']);
  });
  it('array form (rc4) is copied into all five sets', () => {
    const c = caps(['CAP_A', 'CAP_B']);
    for (const set of ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const)
      expect(c[set]).toEqual(['CAP_A', 'CAP_B']);
  });
  it.each([undefined, null])('%j → an empty, non-null capability set', (c) => {
    expect(caps(c)).toEqual({ bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] });
  });
  it.each([
    ['a string', 'CAP_A', '"CAP_A"'],
    ['a number', 7, '7'],
    ['a boolean', true, 'true'],
  ])('%s → "Unexpected format for capabilities: <v>"', async (_, c, shown) => {
    await expectError(() => caps(c), 'InvalidArgument', `Unexpected format for capabilities: ${shown}`);
  });
  it.each([
    ['a known key', { bounding: 'CAP_A' }],
    ['an unknown key', { future: 1 }],
    ['null under a key', { bounding: null }],
  ])('object form with a non-array value under %s → error', async (_, c) => {
    await expectError(() => caps(c), 'InvalidArgument', `Unexpected format for capabilities: ${JSON.stringify(c)}`);
  });
  it.each([
    ['array form', ['CAP_A', 5], 'process.capabilities[1] must be a string'],
    ['object form', { effective: ['CAP_A', null] }, 'process.capabilities.effective[1] must be a string'],
    ['object form, unknown key', { future: [{}] }, 'process.capabilities.future[0] must be a string'],
  ])('[C-bug fixed] a non-string element in the %s is an error, not a crash', async (_, c, where) => {
    await expectError(() => caps(c), 'InvalidArgument', `Unexpected format for capabilities: ${where}`);
  });
});

describe('readSpec', () => {
  it('reads <bundle>/config.json', async () => {
    const s = await readSpec('/b', memFs({ '/b/config.json': spec() }));
    expect(s.process.args).toEqual(['sh']);
  });
  it('a missing config.json → NotFound naming the path', async () => {
    await expectError(
      () => readSpec('/b', memFs({ '/b': { dir: true } })),
      'NotFound',
      'open /b/config.json: no such file or directory',
    );
  });
  it('an unreadable config.json → InvalidArgument with the errno text', async () => {
    await expectError(
      () => readSpec('/b', memFs({ '/b/config.json': { error: 'EACCES' } })),
      'InvalidArgument',
      'open /b/config.json: permission denied',
    );
  });
  it('a parse error propagates', async () => {
    await expectError(() => readSpec('/b', memFs({ '/b/config.json': '{' })), 'InvalidArgument', /not valid JSON/);
  });
});

describe('envForProcess (cmdEnvs)', () => {
  it('splits on the first "=" (Corral keeps A=b=c whole; Kata truncated it to A=b)', () => {
    expect(envForProcess(['A=b=c'])).toEqual([{ name: 'A', value: 'b=c' }]);
  });
  it('drops entries without "="', () => {
    expect(envForProcess(['NOEQ', 'B=1'])).toEqual([{ name: 'B', value: '1' }]);
  });
  it('keeps empty values and order', () => {
    expect(envForProcess(['A=', 'PATH=/bin:/usr/bin', 'Z=z'])).toEqual([
      { name: 'A', value: '' },
      { name: 'PATH', value: '/bin:/usr/bin' },
      { name: 'Z', value: 'z' },
    ]);
  });
});
