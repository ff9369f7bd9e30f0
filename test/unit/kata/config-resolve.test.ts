import { describe, expect, it } from 'vitest';
import { CONFIG_PATH_ANNOTATION, resolveConfigPath, type ConfigPathInputs } from '../../../src/kata/config-resolve.ts';
import { expectError } from './expect-error.ts';
import { memFs } from './mem-fs.ts';

const fs = memFs({
  '/etc/corral/configuration.toml': 'etc',
  '/usr/share/defaults/corral/configuration.toml': 'usr',
  '/etc/corral/pods/fast.toml': 'fast',
  '/etc/corral/pods/escape.toml': { link: '/tmp/evil.toml' },
  '/etc/corral/pods-evil/x.toml': 'x',
  '/tmp/evil.toml': 'evil',
  '/opt/option.toml': 'option',
  '/opt/corral.toml': 'corral env',
  '/opt/kata.toml': 'kata env',
  '/opt/link.toml': { link: '/opt/option.toml' },
  '/srv/conf': { link: '/etc/corral/pods' },
});
const DEFAULTS = ['/etc/corral/configuration.toml', '/usr/share/defaults/corral/configuration.toml'];
const base: ConfigPathInputs = { env: {}, allowedConfigDirs: ['/etc/corral/pods'], defaultPaths: DEFAULTS, fs };
const resolve = (over: Partial<ConfigPathInputs>) => resolveConfigPath({ ...base, ...over });
const ann = (p: string) => ({ annotations: { [CONFIG_PATH_ANNOTATION]: p } });

describe('resolveConfigPath: precedence (§3.1, Corral)', () => {
  const all = {
    ...ann('/etc/corral/pods/fast.toml'),
    configPath: '/opt/option.toml',
    env: { CORRAL_CONF_FILE: '/opt/corral.toml', KATA_CONF_FILE: '/opt/kata.toml' },
  };
  it('annotation (allowed) > option > CORRAL_CONF_FILE > KATA_CONF_FILE > defaults', async () => {
    expect(await resolve(all)).toEqual({ path: '/etc/corral/pods/fast.toml', source: 'annotation' });
    expect(await resolve({ ...all, annotations: {} })).toEqual({ path: '/opt/option.toml', source: 'option' });
    expect(await resolve({ ...all, annotations: {}, configPath: undefined })).toEqual({
      path: '/opt/corral.toml',
      source: 'CORRAL_CONF_FILE',
    });
    expect(await resolve({ env: { KATA_CONF_FILE: '/opt/kata.toml' } })).toEqual({
      path: '/opt/kata.toml',
      source: 'KATA_CONF_FILE',
    });
    expect(await resolve({})).toEqual({ path: '/etc/corral/configuration.toml', source: 'default' });
  });
  it('empty values count as absent at every level', async () => {
    expect(await resolve({ ...ann(''), configPath: '', env: { CORRAL_CONF_FILE: '', KATA_CONF_FILE: '' } })).toEqual({
      path: '/etc/corral/configuration.toml',
      source: 'default',
    });
  });
  it('the default search takes the first path that resolves', async () => {
    expect(await resolve({ defaultPaths: ['/nope.toml', ...DEFAULTS.slice(1)] })).toEqual({
      path: '/usr/share/defaults/corral/configuration.toml',
      source: 'default',
    });
  });
  it('no default resolves → NotFound listing each', async () => {
    await expectError(
      () => resolve({ defaultPaths: ['/a.toml', '/b/c.toml'] }),
      'NotFound',
      'Cannot find usable config file (config file "/a.toml" unresolvable: file /a.toml does not exist, ' +
        'config file "/b/c.toml" unresolvable: file /b/c.toml does not exist)',
    );
  });
  it('no defaults at all', async () => {
    await expectError(() => resolve({ defaultPaths: [] }), 'NotFound', 'Cannot find usable config file ()');
  });
  it('symlinks are followed', async () => {
    expect((await resolve({ configPath: '/opt/link.toml' })).path).toBe('/opt/option.toml');
  });
  it('env is read from the parameter only', async () => {
    process.env.CORRAL_CONF_FILE = '/opt/corral.toml';
    try {
      expect((await resolve({})).source).toBe('default');
    } finally {
      delete process.env.CORRAL_CONF_FILE;
    }
  });
});

describe('resolveConfigPath: named files that do not resolve', () => {
  it.each([
    [{ configPath: '/opt/missing.toml' }, '/opt/missing.toml'],
    [{ env: { CORRAL_CONF_FILE: '/opt/missing.toml' } }, '/opt/missing.toml'],
    [{ env: { KATA_CONF_FILE: '/opt/../opt/missing.toml' } }, '/opt/missing.toml'],
  ])('%j → NotFound "Cannot find usable config file (file <abs> does not exist)"', async (over, abs) => {
    await expectError(() => resolve(over), 'NotFound', `Cannot find usable config file (file ${abs} does not exist)`);
  });
  it('a named file does not fall back to later sources', async () => {
    await expectError(
      () => resolve({ configPath: '/opt/missing.toml', env: { KATA_CONF_FILE: '/opt/kata.toml' } }),
      'NotFound',
      /missing\.toml/,
    );
  });
  it('a relative path is refused (Kata would resolve it against the bundle)', async () => {
    await expectError(
      () => resolve({ configPath: 'conf.toml' }),
      'InvalidArgument',
      'Cannot find usable config file (path conf.toml must be absolute)',
    );
  });
});

describe('resolveConfigPath: the annotation is honoured only inside an allowed directory', () => {
  const outside = (p: string, dirs = '/etc/corral/pods') =>
    `config path ${p} from annotation io.katacontainers.config_path ` +
    `is outside the allowed config directories (${dirs})`;
  it('outside every allowed directory → InvalidArgument, without falling back', async () => {
    await expectError(
      () => resolve({ ...ann('/tmp/evil.toml'), configPath: '/opt/option.toml' }),
      'InvalidArgument',
      outside('/tmp/evil.toml'),
    );
  });
  it('a sibling directory sharing the prefix is outside', async () => {
    await expectError(
      () => resolve(ann('/etc/corral/pods-evil/x.toml')),
      'InvalidArgument',
      outside('/etc/corral/pods-evil/x.toml'),
    );
  });
  it('".." cannot climb out', async () => {
    await expectError(
      () => resolve(ann('/etc/corral/pods/../../../tmp/evil.toml')),
      'InvalidArgument',
      outside('/etc/corral/pods/../../../tmp/evil.toml'),
    );
  });
  it('a symlink inside that points outside is refused', async () => {
    await expectError(
      () => resolve(ann('/etc/corral/pods/escape.toml')),
      'InvalidArgument',
      outside('/etc/corral/pods/escape.toml'),
    );
  });
  it('outside paths are refused before any existence check (no oracle)', async () => {
    await expectError(() => resolve(ann('/nonexistent/x.toml')), 'InvalidArgument', outside('/nonexistent/x.toml'));
  });
  it('a missing file inside an allowed directory → NotFound', async () => {
    await expectError(
      () => resolve(ann('/etc/corral/pods/missing.toml')),
      'NotFound',
      'Cannot find usable config file (file /etc/corral/pods/missing.toml does not exist)',
    );
  });
  it('a relative annotation path is refused', async () => {
    await expectError(
      () => resolve(ann('pods/fast.toml')),
      'InvalidArgument',
      'config path pods/fast.toml from annotation io.katacontainers.config_path must be absolute',
    );
  });
  it('no allowed directories → never honoured', async () => {
    await expectError(
      () => resolve({ ...ann('/etc/corral/pods/fast.toml'), allowedConfigDirs: [] }),
      'InvalidArgument',
      outside('/etc/corral/pods/fast.toml', ''),
    );
  });
  it('an allowed directory named through a symlink also allows its real location', async () => {
    expect((await resolve({ ...ann('/srv/conf/fast.toml'), allowedConfigDirs: ['/srv/conf'] })).path).toBe(
      '/etc/corral/pods/fast.toml',
    );
    expect((await resolve({ ...ann('/etc/corral/pods/fast.toml'), allowedConfigDirs: ['/srv/conf'] })).path).toBe(
      '/etc/corral/pods/fast.toml',
    );
  });
  it('a path that is outside lexically is refused even if a symlink would lead inside', async () => {
    await expectError(() => resolve(ann('/srv/conf/fast.toml')), 'InvalidArgument', outside('/srv/conf/fast.toml'));
  });
});
