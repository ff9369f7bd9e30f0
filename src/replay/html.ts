/**
 * The replay viewer: one self-contained HTML page (inline CSS and JS, a CSP that allows no network)
 * built from a replay result. Top: the verdict and, per task, the lifecycle statechart drawn from the
 * machine definition with the visited states marked. Below: swimlanes, one column per lane (one per
 * task for the sandbox and container lanes), one row per timeline entry in stream order; clicking an
 * entry shows its payload in the side panel. Everything from the log is escaped (html-escape.ts).
 */
import { createHash } from 'node:crypto';
import { containerMachine, sandboxMachine, type LifecycleMachine } from '../machines/index.ts';
import type { ReplayResult, TimelineEntry } from './engine.ts';
import { ms, stateText } from './format.ts';
import { CSS, JS } from './html-assets.ts';
import { chartOf, chartSvg } from './html-chart.ts';
import { esc, scriptJson } from './html-escape.ts';

export interface PageInput {
  sandbox: string;
  node: string;
  /** Where the records came from (a file, or "the event log"). */
  source: string;
  result: ReplayResult;
  /** The definitions replay used; the chart is drawn from them. */
  machines?: { sandbox: LifecycleMachine; container: LifecycleMachine };
}

const LANE_ORDER = [
  'sandbox',
  'container',
  'coordinator',
  'agent',
  'worker:mount',
  'worker:network',
  'worker:hypervisor',
];

/** Swimlane columns: sandbox and container lanes split by task, the others shared. */
export function lanesOf(timeline: TimelineEntry[]): { key: string; lane: string; task?: string }[] {
  const seen = new Map<string, { key: string; lane: string; task?: string }>();
  for (const e of timeline) {
    const perTask = e.lane === 'sandbox' || e.lane === 'container';
    const key = perTask ? `${e.lane}:${e.taskId}` : e.lane;
    if (!seen.has(key)) seen.set(key, { key, lane: e.lane, task: perTask ? e.taskId : undefined });
  }
  return [...seen.values()].sort((a, b) => LANE_ORDER.indexOf(a.lane) - LANE_ORDER.indexOf(b.lane));
}

const laneKey = (e: TimelineEntry) =>
  e.lane === 'sandbox' || e.lane === 'container' ? `${e.lane}:${e.taskId}` : e.lane;

function chipText(e: TimelineEntry): string {
  switch (e.kind) {
    case 'effect':
      return `${e.label.split(' ')[0]} ${e.ok ? '✓' : '✗ failed'}`;
    case 'state':
      return `${stateText(e.label)} ${e.ok === false ? '✗' : '✓'}`;
    case 'fact':
      return `★ ${e.label}`;
    case 'create':
      return 'create';
    default:
      return e.label;
  }
}

export function replayHtml(p: PageInput): string {
  const { result: r } = p;
  const machines = p.machines ?? { sandbox: sandboxMachine, container: containerMachine };
  const t0 = r.timeline[0]?.at ?? 0;
  const lanes = lanesOf(r.timeline);
  const col = new Map(lanes.map((l, i) => [l.key, i + 3]));
  const d = r.divergence;
  const checks = r.timeline.filter((e) => e.kind === 'state').length;
  const span = r.timeline.length ? r.timeline[r.timeline.length - 1]!.at - t0 : 0;

  const charts = r.tasks
    .map(
      (t) => `<figure class="task-chart" data-task="${esc(t.taskId)}">
<figcaption>task <b>${esc(t.taskId)}</b> (${esc(t.machine)} machine): \
${esc(t.visited.map(stateText).join(' → '))}</figcaption>
${chartSvg(chartOf(machines[t.machine]), t.visited)}
</figure>`,
    )
    .join('\n');

  const laneDivs = lanes
    .map(
      (l, i) =>
        `<div class="lane${i % 2 ? ' alt' : ''}" data-lane="${esc(l.lane)}"` +
        `${l.task ? ` data-task="${esc(l.task)}"` : ''} style="grid-column:${col.get(l.key)};grid-row:1 / -1">` +
        `<div class="lane-name">${esc(l.lane)}<small>${esc(l.task ?? '')}</small></div></div>`,
    )
    .join('\n');

  const rows = r.timeline
    .map((e, i) => {
      const row = i + 2,
        gap = i ? e.at - r.timeline[i - 1]!.at : 0;
      const cls = ['ev', `k-${e.kind}`, e.ok === false ? 'failed' : '', e.diverged ? 'diverged' : '']
        .filter(Boolean)
        .join(' ');
      const dur = e.durationMs === undefined ? '' : `<span class="dur">${esc(ms(e.durationMs))}</span>`;
      return (
        `<div class="cell time${gap >= 500 ? ' long' : ''}" style="grid-row:${row};grid-column:1">` +
        `+${((e.at - t0) / 1000).toFixed(3)}s</div>` +
        `<div class="cell seq" style="grid-row:${row};grid-column:2">${e.seq}</div>` +
        `<button type="button" class="${cls}" data-i="${i}" data-seq="${e.seq}" data-kind="${esc(e.kind)}" ` +
        `style="grid-row:${row};grid-column:${col.get(laneKey(e))}" ` +
        `title="${esc(`seq ${e.seq} · ${e.taskId} · ${e.label}`)}">${esc(chipText(e))}${dur}</button>`
      );
    })
    .join('\n');

  const data = {
    sandbox: p.sandbox,
    t0,
    divergence: d ?? null,
    entries: r.timeline.map((e) => ({
      seq: e.seq,
      at: e.at,
      taskId: e.taskId,
      lane: e.lane,
      kind: e.kind,
      label: e.label,
      state: e.state,
      ok: e.ok,
      durationMs: e.durationMs,
      payload: e.payload,
      diverged: e.diverged ?? false,
    })),
  };
  const verdict = d
    ? `<p class="verdict diverged">✗ diverged at seq ${d.seq} (task ${esc(d.taskId)}): ${esc(d.message)}</p>`
    : `<p class="verdict ok">✓ every rebuilt state equals the recorded one (${checks} checks, ${r.inputs} inputs)</p>`;
  const scriptHash = createHash('sha256').update(JS).digest('base64');
  const csp = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${scriptHash}'`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>corral replay: ${esc(p.sandbox)}</title>
<style>${CSS}</style>
</head>
<body>
<div class="top">
<header>
<h1>Replay of sandbox <code>${esc(p.sandbox)}</code></h1>
<p class="meta">node ${esc(p.node)} · from ${esc(p.source)} · up to seq ${r.lastSeq} · \
${r.timeline.length} entries over ${esc(ms(span))}${t0 ? ` from ${esc(new Date(t0).toISOString())}` : ''}</p>
${verdict}
</header>
<section class="charts">
<h2>Lifecycle statechart</h2>
${charts}
<p class="legend">\
<span><i style="background:#e6f0ff;border-color:#2f6fdb"></i>visited (numbers: order of visits)</span>\
<span><i style="border:3px solid #0b3d91"></i>final rebuilt state</span>\
<span><i style="border:1px dashed #7b4bd6"></i>passed through (transient)</span>\
<span>hover a state or arrow for details; click a state to light up its entries</span></p>
</section>
</div>
<main>
<section class="timeline">
<h2>Timeline</h2>
<p class="hint">One column per lane, one row per entry in stream order. \
Click an entry (or use ↑/↓) to see its payload.</p>
<div class="lanes" style="grid-template-columns:6.5em 3.5em repeat(${lanes.length}, minmax(8.5em, 1fr));\
grid-template-rows:auto repeat(${r.timeline.length}, auto)">
<div class="hdr" style="grid-row:1;grid-column:1">time</div>\
<div class="hdr" style="grid-row:1;grid-column:2;text-align:right">seq</div>
${laneDivs}
${rows}
</div>
</section>
<aside class="panel" aria-live="polite">
<h2 id="p-title">Payload</h2>
<dl id="p-meta"></dl>
<pre id="p-json">Click an event in the timeline to see its payload.</pre>
</aside>
</main>
<script type="application/json" id="replay-data">${scriptJson(data)}</script>
<script>${JS}</script>
</body>
</html>
`;
}
