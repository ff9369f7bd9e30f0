/**
 * What containerd hands the shim on its command line: the flags (src/shim/flags.ts `parseFlags`) and the
 * stdio strings (src/shim/stdio.ts `stdioPath`), on any input. The flags parser answers flags or
 * InvalidArgument, never another error, and reads back every command line containerd's shim manager
 * writes (Go `flag` style, any order and spelling). A stdio string is no stream (only for ''), an
 * absolute path (a FIFO path is itself; a `file://` URI is the path it encodes, percent-decoded as Go's
 * `url.Parse(...).Path` reads it), or InvalidArgument naming the stream.
 */
import { pathToFileURL } from 'node:url';
import { describe, expect, vi } from 'vitest';
import { parseFlags, type ShimFlags } from '../../../src/shim/flags.ts';
import { stdioPath } from '../../../src/shim/stdio.ts';
import { fc, test } from './prop.ts';
import { RUNS, TIMEOUT_MS } from './runs.ts';
import { verdict } from './verdict.ts';
import { wireString } from './wire.ts';

vi.setConfig({ testTimeout: TIMEOUT_MS });

const FLAG = {
  namespace: 'namespace',
  address: 'address',
  publishBinary: 'publish-binary',
  id: 'id',
  bundle: 'bundle',
  socket: 'socket',
} as const;
const arg = fc.oneof(
  fc.constantFrom('-namespace', '-address', '-publish-binary', '-id', '-bundle', '-socket', '-debug', '-v'),
  fc.constantFrom('--id=x', '-debug=false', '-debug=true', 'start', 'delete', 'reap', '-', '--', '-x', '-id='),
  wireString,
);

describe('shim flags', () => {
  test.prop([fc.array(arg, { maxLength: 8 })], { numRuns: RUNS })('any argv: the flags, or InvalidArgument', (argv) => {
    const r = verdict(() => parseFlags(argv));
    if (r.ok) expect(['start', 'delete', 'serve']).toContain(r.value.action);
  });

  const value = fc.oneof(
    wireString,
    fc.constantFrom('k8s.io', '/run/containerd/containerd.sock', '-x', 'a=b', 'start'),
  );
  const flags = fc
    .record({
      namespace: value,
      address: value,
      publishBinary: value,
      id: value,
      bundle: value,
      socket: value,
      debug: fc.boolean(),
      action: fc.constantFrom('start', 'delete', 'serve'),
    })
    // What containerd writes: start and delete name the task; the daemon (no action) gets its -socket.
    .filter((f) =>
      f.action === 'serve' ? f.socket !== '' : f.id !== '' && f.namespace !== '',
    ) as fc.Arbitrary<ShimFlags>;
  const spelling = fc.constantFrom('-k v', '-k=v', '--k=v', '--k v');

  test.prop([flags, fc.array(spelling, { minLength: 6, maxLength: 6 }), fc.nat()], { numRuns: RUNS })(
    'reads back what containerd writes, in any order and spelling',
    (f, spellings, seed) => {
      const pairs = (Object.keys(FLAG) as (keyof typeof FLAG)[]).map((k, i) => {
        const name = FLAG[k];
        const s = spellings[i]!;
        const dash = s.startsWith('--') ? '--' : '-';
        return s.includes('=') ? [`${dash}${name}=${f[k]}`] : [`${dash}${name}`, f[k]];
      });
      if (f.debug) pairs.push(['-debug']);
      const order = pairs.map((p, i) => ({ p, k: (seed * (i + 7)) % 13 })).sort((a, b) => a.k - b.k);
      const argv = [...order.flatMap((x) => x.p), ...(f.action === 'serve' ? [] : [f.action])];
      expect(parseFlags(argv)).toEqual(f);
    },
  );
});

const stdio = fc.oneof(
  wireString,
  fc.constantFrom('file://', 'fifo://', 'binary:///usr/bin/logger', 'file:///tmp/x', 'file://host/x', 'FILE:///x'),
  fc.tuple(fc.constantFrom('file://', 'fifo://', 'http://', ''), fc.string({ maxLength: 12 })).map(([a, b]) => a + b),
);
/** A path as a FIFO's name can be: anything but NUL. */
const absPath = fc
  .array(
    fc.string({
      unit: fc.constantFrom('a', 'Z', '0', ' ', '%', '#', '?', 'é', ':', '@', '.', '-'),
      minLength: 1,
      maxLength: 6,
    }),
    {
      minLength: 1,
      maxLength: 3,
    },
  )
  .map((parts) => `/${parts.join('/')}`)
  .filter((p) => !p.split('/').some((s) => s === '.' || s === '..'));

describe('stdioPath', () => {
  test.prop([stdio], { numRuns: RUNS })(
    'no stream only for "", else an absolute path or InvalidArgument naming the stream',
    (v) => {
      const r = verdict(() => stdioPath(v, 'stdout'), { names: ['stdout'] });
      if (!r.ok) return;
      if (v === '') expect(r.value).toBeUndefined();
      else expect(r.value, `${JSON.stringify(v)} → ${JSON.stringify(r.value)}`).toMatch(/^\//);
    },
  );
  test.prop([absPath], { numRuns: RUNS })('a FIFO path is itself; file:// of a path is that path', (p) => {
    expect(stdioPath(p, 'stdout')).toBe(p);
    expect(stdioPath(pathToFileURL(p).href, 'stdout')).toBe(p);
  });

  test('regression: a file:// URI that does not parse is InvalidArgument, not a TypeError', () => {
    expect(() => stdioPath('file://[', 'stdout')).toThrowError(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('stdout') }),
    );
  });
  test('regression: file:// paths are percent-decoded, as containerd writes them (/tmp/a%20b is /tmp/a b)', () => {
    expect(stdioPath('file:///tmp/a%20b', 'stdout')).toBe('/tmp/a b');
  });
  test('regression: fifo:// without a path is InvalidArgument, not "" (which reads as no stream)', () => {
    expect(() => stdioPath('fifo://host', 'stderr')).toThrowError(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});
