/** Which configuration file a create uses (kata-create-spec.md §3.1, Corral's variant). */
import * as path from 'node:path';
import { CorralError, err } from '../errors.ts';
import { type KataFs, nodeFs, resolvePath } from './fs.ts';
import { isWithin } from './util.ts';

/** The OCI annotation that may name a config file (`anno.SandboxConfigPathKey`). */
export const CONFIG_PATH_ANNOTATION = 'io.katacontainers.config_path';

export interface ConfigPathInputs {
  /** The OCI spec's annotations. */
  readonly annotations?: Readonly<Record<string, string>>;
  /** The create request's `options.configPath`. */
  readonly configPath?: string;
  /** The environment to read `CORRAL_CONF_FILE` and `KATA_CONF_FILE` from (never `process.env` implicitly). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directories the annotation may point into; empty = the annotation is never honoured. */
  readonly allowedConfigDirs: readonly string[];
  /**
   * Searched in order when nothing else names a file, e.g.
   * `['/etc/corral/configuration.toml', '/usr/share/defaults/corral/configuration.toml']`.
   */
  readonly defaultPaths: readonly string[];
  /** @default nodeFs */
  readonly fs?: KataFs;
}

export type ConfigPathSource = 'annotation' | 'option' | 'CORRAL_CONF_FILE' | 'KATA_CONF_FILE' | 'default';

export interface ResolvedConfigPath {
  /** Absolute, symlinks followed. */
  readonly path: string;
  readonly source: ConfigPathSource;
}

const unusable = (inner: unknown): unknown =>
  inner instanceof CorralError
    ? new CorralError(inner.code, `Cannot find usable config file (${inner.message})`, { cause: inner })
    : inner;

/**
 * The annotation path, honoured only inside an allowed directory. The lexical check comes before any
 * file-system access (no existence oracle outside the allowed directories); the real path is checked
 * again so a symlink cannot lead out.
 */
async function fromAnnotation(fs: KataFs, value: string, dirs: readonly string[]): Promise<string> {
  const outside = () =>
    err.invalid(
      `config path ${value} from annotation ${CONFIG_PATH_ANNOTATION} is outside the allowed config directories ` +
        `(${dirs.join(', ')})`,
    );
  if (!path.isAbsolute(value))
    throw err.invalid(`config path ${value} from annotation ${CONFIG_PATH_ANNOTATION} must be absolute`);
  const roots = dirs.filter((d) => path.isAbsolute(d));
  // A directory that does not resolve is checked by its name only (the `roots` themselves are kept).
  const real = await Promise.all(roots.map((d) => fs.realpath(d).catch(() => undefined)));
  const all = [...roots, ...real.filter((d): d is string => d !== undefined)];
  if (!all.some((d) => isWithin(d, path.resolve(value)))) throw outside();
  const file = await resolvePath(fs, value).catch((e: unknown) => {
    throw unusable(e);
  });
  if (!real.some((d) => d !== undefined && isWithin(d, file))) throw outside();
  return file;
}

/**
 * Pick the config file. Order: the `io.katacontainers.config_path` annotation (non-empty; only inside
 * `allowedConfigDirs`), the create option `configPath`, env `CORRAL_CONF_FILE`, env `KATA_CONF_FILE`,
 * then the first of `defaultPaths` that resolves. An empty value counts as absent everywhere.
 * @throws NotFound `Cannot find usable config file (file <abs> does not exist)` for a named file, or
 *   `Cannot find usable config file (config file "<p1>" unresolvable: ..., config file "<p2>" unresolvable: ...)`;
 *   InvalidArgument for an annotation outside the allowed directories or a relative path.
 */
export async function resolveConfigPath(inputs: ConfigPathInputs): Promise<ResolvedConfigPath> {
  const fs = inputs.fs ?? nodeFs;
  const annotation =
    inputs.annotations && Object.hasOwn(inputs.annotations, CONFIG_PATH_ANNOTATION)
      ? inputs.annotations[CONFIG_PATH_ANNOTATION]
      : undefined;
  if (annotation) return { path: await fromAnnotation(fs, annotation, inputs.allowedConfigDirs), source: 'annotation' };
  const named: Array<[ConfigPathSource, string | undefined]> = [
    ['option', inputs.configPath],
    ['CORRAL_CONF_FILE', inputs.env.CORRAL_CONF_FILE],
    ['KATA_CONF_FILE', inputs.env.KATA_CONF_FILE],
  ];
  for (const [source, p] of named) {
    if (!p) continue;
    const file = await resolvePath(fs, p).catch((e: unknown) => {
      throw unusable(e);
    });
    return { path: file, source };
  }
  const errors: string[] = [];
  for (const p of inputs.defaultPaths) {
    try {
      return { path: await resolvePath(fs, p), source: 'default' };
    } catch (e) {
      errors.push(`config file ${JSON.stringify(p)} unresolvable: ${(e as Error).message}`);
    }
  }
  throw err.notFound(`Cannot find usable config file (${errors.join(', ')})`);
}
