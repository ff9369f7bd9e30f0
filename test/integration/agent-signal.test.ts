/**
 * An agent that is told to stop (SIGTERM) while it is still starting, right after it spawned its workers,
 * stops them too: a signal in that window used to end the agent at once, and its workers outlived it
 * (seen in CI: a test's teardown sent SIGTERM the moment the node's registry entry said ready).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { natsServer, type TestNats } from '../helpers/nats.ts';
import { agentDir, removeAgentDir, spawnAgent } from '../helpers/agent-process.ts';
import { processesMatching } from '../helpers/leaks.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNats;
const { dir, conf } = agentDir('signal');
beforeAll(async () => {
  n = await natsServer();
});
afterAll(async () => {
  await n.cleanup();
  expect(removeAgentDir(dir)).toEqual([]);
});

it('SIGTERM while the agent starts, once its workers are spawned: it finishes starting, then stops them', async () => {
  const agent = spawnAgent({
    node: `sig${process.pid}`,
    nats: n.url,
    dir,
    conf,
    stdio: ['ignore', 'ignore', 'pipe'],
    logLevel: 'warn',
  });
  let stderr = '';
  agent.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => agent.once('exit', (code) => r(code)));
  const workers = () => processesMatching(`--data-dir ${dir}`).filter((pid) => pid !== agent.pid);
  // Its workers exist, and it has not said it is ready (it says so only once it serves).
  await waitFor(workers, { until: (w) => w.length === 3, timeoutMs: 30_000, intervalMs: 5, what: '3 workers spawned' });
  expect(stderr).not.toContain('corral agent ready');
  agent.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stderr).toContain('stopping once the start is done');
  expect(stderr).toContain('corral agent ready');
  expect(workers()).toEqual([]);
}, 60_000);
