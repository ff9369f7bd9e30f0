/**
 * Reading a Kata configuration.toml and its `config.d/` drop-ins (kata-create-spec.md §3.2): each file
 * parsed as TOML and type-checked table by table; drop-ins merged key by key, in lexical order.
 */
import * as path from 'node:path';
import { err } from '../errors.ts';
import { decodeNamed, decodeTable, mergeInto, parseToml } from './config-decode.ts';
import { AGENT_KEYS, FACTORY_KEYS, HYPERVISOR_KEYS, RUNTIME_KEYS, type Raw } from './config-types.ts';
import { type KataFs, errnoOf, fsErrorText } from './fs.ts';
import { prefixed } from './util.ts';

/** The configuration's tables as the files hold them (after type checks, before defaults). */
export type Doc = {
  hypervisor: Record<string, Raw<typeof HYPERVISOR_KEYS>>;
  agent: Record<string, Raw<typeof AGENT_KEYS>>;
  runtime: Raw<typeof RUNTIME_KEYS>;
  factory: Raw<typeof FACTORY_KEYS>;
};
const TOP_LEVEL = ['hypervisor', 'agent', 'runtime', 'factory', 'image'];

/** One file's tables, type-checked; errors start with `errPrefix: `, warnings with the file. */
function decodeFile(text: string, file: string, errPrefix: string, warnings: string[]): Doc {
  const w: string[] = [];
  try {
    const doc = parseToml(text);
    for (const k of Object.keys(doc)) if (!TOP_LEVEL.includes(k)) w.push(`unknown configuration key ${k} ignored`);
    return {
      hypervisor: decodeNamed(HYPERVISOR_KEYS, doc.hypervisor, 'hypervisor', w),
      agent: decodeNamed(AGENT_KEYS, doc.agent, 'agent', w),
      runtime: decodeTable(RUNTIME_KEYS, doc.runtime, 'runtime', w),
      factory: decodeTable(FACTORY_KEYS, doc.factory, 'factory', w),
    };
  } catch (e) {
    throw prefixed(errPrefix, e);
  } finally {
    warnings.push(...w.map((m) => `${file}: ${m}`));
  }
}

async function readConfigFile(fs: KataFs, file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const msg = `${what}${fsErrorText('open', file, e)}`;
    throw errnoOf(e) === 'ENOENT' ? err.notFound(msg, e) : err.invalid(msg, e);
  }
}

/** `<dir of file>/config.d/*`, every entry, in lexical order; a missing directory means none. */
async function dropIns(fs: KataFs, file: string): Promise<string[]> {
  const dir = path.join(path.dirname(file), 'config.d');
  try {
    return (await fs.readdir(dir)).sort().map((n) => path.join(dir, n));
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw err.invalid(`error reading ${JSON.stringify(dir)} directory: ${fsErrorText('open', dir, e)}`, e);
  }
}

/**
 * `configPath` merged with its drop-ins. Warnings (unknown keys) go to `warnings`, each naming its file.
 * @throws NotFound when `configPath` does not exist; InvalidArgument with Kata's messages otherwise.
 */
export async function readConfigDoc(fs: KataFs, configPath: string, warnings: string[]): Promise<Doc> {
  const doc = decodeFile(await readConfigFile(fs, configPath, ''), configPath, configPath, warnings);
  for (const file of await dropIns(fs, configPath)) {
    const text = await readConfigFile(fs, file, `error reading file ${JSON.stringify(file)}: `);
    mergeInto(doc, decodeFile(text, file, `error decoding file ${JSON.stringify(file)}`, warnings));
  }
  return doc;
}
