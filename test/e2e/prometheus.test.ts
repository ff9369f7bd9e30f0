/**
 * Debian's Prometheus scrapes a node's metrics endpoint (as an operator would run it), and the create
 * latency histogram comes back through Prometheus' own HTTP API: the names, types and labels are ones a
 * real Prometheus takes, not only text that looks right.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

let n: TestNode;
let prom: ChildProcess | undefined;
let dir: string;
let api: string;
beforeAll(async () => {
  n = await testNode({ simulate: true });
  dir = mkdtempSync('/tmp/crl-prom-');
  const target = new URL(n.metricsUrl).host;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    ['global:', '  scrape_interval: 1s', 'scrape_configs:', '  - job_name: corral', '    static_configs:']
      .concat(`      - targets: ['${target}']`, '')
      .join('\n'),
  );
  api = `http://127.0.0.1:${await freePort()}`;
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${new URL(api).host}`,
    ],
    { stdio: 'ignore' },
  );
  await waitFor(() => fetch(`${api}/-/ready`).then((r) => r.status), {
    until: (s) => s === 200,
    timeoutMs: 60_000,
    intervalMs: 200,
    what: 'Prometheus ready',
    ignoreErrors: true, // refused until it listens
  });
});
afterAll(async () => {
  if (prom && prom.exitCode === null) {
    const gone = new Promise((r) => prom!.once('exit', r));
    prom.kill('SIGTERM');
    await gone;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
  await n?.cleanup();
});

interface Vector {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}
const query = async (q: string) =>
  (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as Vector;

describe('Prometheus scraping a node', () => {
  it('has the create latency histogram, by outcome, and its quantiles', async () => {
    for (const id of ['p1', 'p2']) {
      await n.call('create', { id, bundle: n.bundle(id, { args: ['sleep', '1'] }) });
      await n.call('delete', { id });
    }
    const count = await waitFor(() => query('corral_create_duration_seconds_count{outcome="ok"}'), {
      until: (v) => Number(v.data.result[0]?.value[1] ?? 0) >= 2,
      timeoutMs: 30_000,
      intervalMs: 500,
      what: 'two creates scraped',
    });
    expect(count.data.result[0]!.metric).toMatchObject({ job: 'corral', outcome: 'ok' });
    const p50 = await query('histogram_quantile(0.5, sum by (le) (corral_create_duration_seconds_bucket))');
    expect(p50.status).toBe('success');
    const seconds = Number(p50.data.result[0]?.value[1]);
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60);
    const steps = await query('count by (step) (corral_create_step_duration_seconds_count)');
    expect(steps.data.result.map((r) => r.metric.step)).toContain('boot');
    const leaks = await query('corral_leaks_found_total');
    expect(leaks.data.result[0]?.value[1]).toBe('0');
  });
});
