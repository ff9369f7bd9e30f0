/**
 * Prometheus metrics of one node, in the text exposition format (no client library needed), named as
 * Prometheus asks (base units in the name: seconds; `_total` for counters):
 *   corral_create_duration_seconds{outcome}            histogram: create request to reply
 *   corral_create_step_duration_seconds{step,outcome}  histogram: each create step and compensation
 *   corral_create_failures_total{code}                 creates answered with an error, by catalogue code
 *   corral_rollbacks_total, corral_rollbacks_incomplete_total, corral_leaks_found_total (must stay 0)
 *   corral_recoveries_total, corral_recovery_duration_seconds, corral_recovered_tasks (the last recovery)
 *   corral_recovery_phase_seconds{phase}: the last start's phases (start: process start to the first NATS call;
 *     setup, workers, read, snapshots, rebuild, reconcile; serve: process start to the Task API subscribed)
 *   and the gauges the caller passes at render time (tasks by status).
 */
const BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const labelText = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, '_')}"`)
    .join(',');

class Histogram {
  private series = new Map<string, { counts: number[]; sum: number; n: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  observe(labels: Record<string, string>, seconds: number) {
    const key = labelText(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { counts: BUCKETS_S.map(() => 0), sum: 0, n: 0 }));
    BUCKETS_S.forEach((b, i) => {
      if (seconds <= b) s.counts[i]!++;
    });
    s.sum += seconds;
    s.n++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.series) {
      const sep = key ? ',' : '';
      BUCKETS_S.forEach((b, i) => out.push(`${this.name}_bucket{${key}${sep}le="${b}"} ${s.counts[i]}`));
      out.push(
        `${this.name}_bucket{${key}${sep}le="+Inf"} ${s.n}`,
        `${this.name}_sum{${key}} ${s.sum}`,
        `${this.name}_count{${key}} ${s.n}`,
      );
    }
    return out;
  }
}

/** A counter or gauge family: one value per label set. */
class Family {
  private values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly type: 'counter' | 'gauge',
    readonly help: string,
  ) {}
  add(labels: Record<string, string>, v = 1) {
    const k = labelText(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + v);
  }
  set(labels: Record<string, string>, v: number) {
    this.values.set(labelText(labels), v);
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    if (this.values.size === 0 && this.type === 'counter') out.push(`${this.name} 0`);
    for (const [k, v] of this.values) out.push(k ? `${this.name}{${k}} ${v}` : `${this.name} ${v}`);
    return out;
  }
}

export function createMetrics() {
  const create = new Histogram('corral_create_duration_seconds', 'Task create latency, request to reply.');
  const step = new Histogram('corral_create_step_duration_seconds', 'Latency of each create step and compensation.');
  const failures = new Family('corral_create_failures_total', 'counter', 'Creates answered with an error, by code.');
  const rollbacks = new Family('corral_rollbacks_total', 'counter', 'Creates rolled back.');
  const incomplete = new Family(
    'corral_rollbacks_incomplete_total',
    'counter',
    'Rollbacks whose compensations are still being retried.',
  );
  const leaks = new Family('corral_leaks_found_total', 'counter', 'Orphaned resources found (must stay 0).');
  const recoveries = new Family('corral_recoveries_total', 'counter', 'Agent starts that recovered from the log.');
  const recovery = new Family('corral_recovery_duration_seconds', 'gauge', 'How long the last recovery took.');
  const recovered = new Family('corral_recovered_tasks', 'gauge', 'Tasks the last recovery rebuilt.');
  const phases = new Family('corral_recovery_phase_seconds', 'gauge', "The agent's last start, by phase.");
  return {
    createDone: (ms: number, ok: boolean, code?: string) => {
      create.observe({ outcome: ok ? 'ok' : 'error' }, ms / 1000);
      if (!ok) failures.add({ code: code ?? 'Internal' });
    },
    step: (name: string, ms: number, ok: boolean) =>
      step.observe({ step: name, outcome: ok ? 'ok' : 'error' }, ms / 1000),
    rollback: (clean: boolean) => {
      rollbacks.add({});
      if (!clean) incomplete.add({});
    },
    leaks: (n: number) => leaks.add({}, n),
    recovered: (ms: number, tasks: number) => {
      recoveries.add({});
      recovery.set({}, ms / 1000);
      recovered.set({}, tasks);
    },
    /** The phases of this agent's start (ms each). */
    startPhases: (ms: Record<string, number>) => {
      for (const [phase, v] of Object.entries(ms)) phases.set({ phase }, v / 1000);
    },
    /** `gauges`: name → value, or name → { label value → value } (one label, named by `labelName`). */
    render: (gauges: Record<string, number | { label: string; values: Record<string, number> }> = {}) =>
      [
        ...create.render(),
        ...step.render(),
        ...failures.render(),
        ...rollbacks.render(),
        ...incomplete.render(),
        ...leaks.render(),
        ...recoveries.render(),
        ...recovery.render(),
        ...recovered.render(),
        ...phases.render(),
        ...Object.entries(gauges).flatMap(([k, v]) => {
          if (typeof v === 'number') return [`# TYPE ${k} gauge`, `${k} ${v}`];
          return [`# TYPE ${k} gauge`, ...Object.entries(v.values).map(([l, x]) => `${k}{${v.label}="${l}"} ${x}`)];
        }),
      ].join('\n') + '\n',
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
