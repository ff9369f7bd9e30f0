/** What a CLI command writes to and reads its environment from (the process's, or a test's capture). */
export interface Io {
  env: NodeJS.ProcessEnv;
  out(line: string): void;
  err(line: string): void;
  stdout(b: Uint8Array): void;
  stderr(b: Uint8Array): void;
}
