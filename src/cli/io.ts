/** What a CLI command writes to and reads its environment from (the process's, or a test's capture). */
export interface Io {
  env: NodeJS.ProcessEnv;
  /** A line for stdout (results). */
  out: (line: string) => void;
  /** A line for stderr (progress, errors). */
  err: (line: string) => void;
  /** Raw bytes (a task's output), as they come. */
  stdout: (b: Uint8Array) => void;
  stderr: (b: Uint8Array) => void;
  /** The local stdin, for `-i` and `-t` (absent in tests that capture output only). */
  stdin?: NodeJS.ReadStream;
}
