/**
 * The Grafana dashboard (infra/grafana/corral.json) is an importable dashboard whose every query names
 * only metrics the agent serves (src/agent/metrics.ts renders them), so a rename cannot leave it blank.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/agent/metrics.ts';

const dash = JSON.parse(readFileSync(new URL('../../infra/grafana/corral.json', import.meta.url), 'utf8')) as {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: { id: number; title: string; gridPos: object; targets: { expr: string }[] }[];
};

describe('the Grafana dashboard', () => {
  it('is a dashboard with unique panel ids, each with a query and a place', () => {
    expect(dash).toMatchObject({ title: 'Corral', uid: 'corral-node' });
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length);
    for (const p of dash.panels) {
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      expect(p.gridPos, p.title).toBeDefined();
    }
  });
  it('queries only metrics the agent serves', () => {
    const m = createMetrics();
    m.createDone(10, true);
    m.createDone(10, false, 'Timeout');
    m.step('boot', 5, true);
    const served = new Set(
      [
        ...m
          .render({ corral_tasks: 1, corral_tasks_by_status: { label: 'status', values: { running: 1 } } })
          .matchAll(/^# TYPE (\S+) (\w+)$/gm),
      ].flatMap(([, name, type]) =>
        type === 'histogram' ? [`${name}_bucket`, `${name}_count`, `${name}_sum`] : [name!],
      ),
    );
    const used = dash.panels.flatMap((p) =>
      p.targets.flatMap((t) => [...t.expr.matchAll(/\bcorral_[a-z_]+/g)].map((x) => x[0])),
    );
    expect(used.length).toBeGreaterThan(10);
    for (const u of used) expect(served, u).toContain(u);
  });
});
