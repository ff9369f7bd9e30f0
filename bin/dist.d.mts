/** Types of bin/dist.mjs (plain JavaScript: the entry point runs it before any TypeScript can be). */
export declare const REPO: string;
export declare function fingerprint(dir?: string): string;
export declare function entry(
  repo?: string,
  env?: Record<string, string | undefined>,
  module?: 'cli/main' | 'shim/main',
): { main: string; compiled: boolean; why: string };
