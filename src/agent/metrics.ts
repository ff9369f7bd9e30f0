/**
 * Prometheus metrics of one node, in the text exposition format (no client library needed):
 * create latency (whole and by step), rollbacks, and leaks found (must stay 0).
 */
const BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];

class Histogram {
  private series = new Map<string, { counts: number[]; sum: number; n: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  observe(labels: Record<string, string>, v: number) {
    const key = Object.entries(labels)
      .map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, '_')}"`)
      .join(',');
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { counts: BUCKETS_MS.map(() => 0), sum: 0, n: 0 }));
    BUCKETS_MS.forEach((b, i) => {
      if (v <= b) s.counts[i]!++;
    });
    s.sum += v;
    s.n++;
  }
  render(): string {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.series) {
      const sep = key ? ',' : '';
      BUCKETS_MS.forEach((b, i) => out.push(`${this.name}_bucket{${key}${sep}le="${b}"} ${s.counts[i]}`));
      out.push(
        `${this.name}_bucket{${key}${sep}le="+Inf"} ${s.n}`,
        `${this.name}_sum{${key}} ${s.sum}`,
        `${this.name}_count{${key}} ${s.n}`,
      );
    }
    return out.join('\n');
  }
}

export function createMetrics() {
  const create = new Histogram('corral_create_duration_milliseconds', 'Task create latency, request to reply.');
  const step = new Histogram(
    'corral_create_step_duration_milliseconds',
    'Latency of each create step and compensation.',
  );
  const counters = { rollbacks: 0, rollbacksWithLeftovers: 0, leaksFound: 0 };
  return {
    createDone: (ms: number, ok: boolean) => create.observe({ outcome: ok ? 'ok' : 'error' }, ms),
    step: (name: string, ms: number, ok: boolean) => step.observe({ step: name, outcome: ok ? 'ok' : 'error' }, ms),
    rollback: (clean: boolean) => {
      counters.rollbacks++;
      if (!clean) counters.rollbacksWithLeftovers++;
    },
    leaks: (n: number) => {
      counters.leaksFound += n;
    },
    render: (gauges: Record<string, number> = {}) =>
      [
        create.render(),
        step.render(),
        '# HELP corral_rollbacks_total Creates rolled back.',
        '# TYPE corral_rollbacks_total counter',
        `corral_rollbacks_total ${counters.rollbacks}`,
        '# HELP corral_rollbacks_incomplete_total Rollbacks whose compensations are still being retried.',
        '# TYPE corral_rollbacks_incomplete_total counter',
        `corral_rollbacks_incomplete_total ${counters.rollbacksWithLeftovers}`,
        '# HELP corral_leaks_found_total Orphaned resources found (must stay 0).',
        '# TYPE corral_leaks_found_total counter',
        `corral_leaks_found_total ${counters.leaksFound}`,
        ...Object.entries(gauges).flatMap(([k, v]) => [`# TYPE ${k} gauge`, `${k} ${v}`]),
      ].join('\n') + '\n',
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
