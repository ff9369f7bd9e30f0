/**
 * The replay page's stylesheet and script, inlined by html.ts (the page loads nothing). The script
 * reads the entries from `<script type="application/json" id="replay-data">` and only ever writes
 * payloads with textContent, so nothing from the log becomes markup.
 */
export const CSS = `
:root { --bg:#fbfbfd; --fg:#1d2330; --muted:#6b7385; --line:#e3e6ee; --panel:#fff;
  --create:#7b4bd6; --request:#2f6fdb; --effect:#0d8a7a; --state:#5d6679; --fact:#b7791f; --bad:#d0343a; --ok:#1f8a4c; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color:var(--fg); background:var(--bg); }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.top { padding:16px 20px 0; }
.top h1 { font-size:20px; margin:0 0 4px; }
.top .meta { color:var(--muted); margin:0 0 8px; }
main { display:grid; grid-template-columns: minmax(0,1fr) minmax(300px, 32%); min-height:100vh; }
.timeline { padding:0 20px 40px; min-width:0; }
.verdict { display:inline-block; padding:4px 10px; border-radius:6px; font-weight:600; margin:0 0 8px; }
.verdict.ok { background:#e5f5eb; color:var(--ok); }
.verdict.diverged { background:#fde8e8; color:var(--bad); }
.verdict a { color:inherit; }
h2 { font-size:15px; margin:18px 0 8px; color:#39414f; }
.task-chart svg { max-width:100%; height:auto; }
.task-chart { margin:0 0 12px; overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:8px;
  padding:6px 8px; }
.task-chart figcaption { font-size:13px; color:var(--muted); margin-bottom:2px; }
.task-chart figcaption b { color:var(--fg); }
svg.chart text { font-size:12px; text-anchor:middle; fill:#3a4150; pointer-events:none; }
svg.chart .state rect { fill:#fff; stroke:#b8bfcc; stroke-width:1.2; }
svg.chart .state rect.inner { fill:none; }
svg.chart .state { cursor:pointer; }
svg.chart .state.passed rect { stroke:var(--create); stroke-dasharray:4 3; }
svg.chart .state.visited > rect { fill:#e6f0ff; stroke:var(--request); stroke-width:1.8; }
svg.chart .state.current > rect:first-of-type { stroke:#0b3d91; stroke-width:3; }
svg.chart .state.visited > text { font-weight:600; fill:#0b3d91; }
svg.chart .substate rect { fill:#f3f4f7; stroke:#d1d5de; }
svg.chart .substate.visited rect { fill:var(--request); stroke:var(--request); }
svg.chart .substate text { font-size:10px; }
svg.chart .substate.visited text { fill:#fff; }
svg.chart text.visits { font-size:10px; text-anchor:end; fill:var(--request); font-weight:700; }
svg.chart .edge { fill:none; stroke:#c3c8d3; stroke-width:1.2; }
svg.chart .edge.taken { stroke:var(--request); stroke-width:2; }
svg.chart marker path { fill:#8a93a6; }
svg.chart .initial { fill:#3a4150; }
.legend { font-size:12px; color:var(--muted); display:flex; gap:14px; flex-wrap:wrap; margin:4px 0 0; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:3px; vertical-align:-2px; margin-right:4px;
  border:1px solid #b8bfcc; }
.lanes { display:grid; column-gap:0; row-gap:3px; position:relative; }
.lane { border-left:1px solid var(--line); background:rgba(255,255,255,.6); min-width:0; }
.lane.alt { background:#f3f5f9; }
.lane-name, .hdr { position:sticky; top:0; z-index:2; background:#eef1f6; border-bottom:1px solid var(--line);
  padding:6px 8px; font-weight:600; font-size:12px; height:46px; }
.lane-name small { display:block; font-weight:400; color:var(--muted); overflow:hidden; text-overflow:ellipsis;
  white-space:nowrap; }
.cell { font-size:12px; color:var(--muted); padding:3px 6px; white-space:nowrap; z-index:1; }
.cell.seq { text-align:right; }
.cell.long { color:var(--fg); font-weight:600; border-top:1px dashed #c3c8d3; }
.ev { z-index:1; margin:0 6px; min-width:0; text-align:left; font:12px/1.3 inherit; font-family:inherit; cursor:pointer;
  padding:2px 8px; border-radius:11px; border:1px solid transparent; color:#fff; white-space:nowrap; overflow:hidden;
  text-overflow:ellipsis; }
.ev .dur { opacity:.85; font-size:11px; margin-left:6px; }
.ev.k-create { background:var(--create); }
.ev.k-request { background:var(--request); }
.ev.k-effect { background:var(--effect); }
.ev.k-effect.failed { background:var(--bad); }
.ev.k-state { background:#fff; color:var(--state); border-color:#c9ced8; }
.ev.k-fact { background:#fff4e0; color:#7a4d0b; border-color:#efcf96; }
.ev.diverged { background:var(--bad) !important; color:#fff !important; }
.ev.hl { box-shadow:0 0 0 2px #ffd54a; }
.ev:hover { filter:brightness(.95); }
.ev.selected { outline:3px solid #0b3d91; outline-offset:1px; }
aside.panel { position:sticky; top:0; height:100vh; overflow:auto; background:var(--panel);
  border-left:1px solid var(--line); padding:16px; }
aside.panel h2 { margin-top:0; }
aside.panel dl { display:grid; grid-template-columns:auto 1fr; gap:2px 12px; margin:0 0 10px; font-size:13px; }
aside.panel dt { color:var(--muted); }
aside.panel dd { margin:0; word-break:break-all; }
aside.panel pre { background:#f6f7fa; border:1px solid var(--line); border-radius:6px; padding:10px; font-size:12px;
  white-space:pre-wrap; word-break:break-word; }
.hint { color:var(--muted); font-size:12px; }
`;

export const JS = `
'use strict';
const data = JSON.parse(document.getElementById('replay-data').textContent);
const evs = Array.from(document.querySelectorAll('.ev'));
const title = document.getElementById('p-title');
const meta = document.getElementById('p-meta');
const pre = document.getElementById('p-json');
let current = -1;

function row(k, v) {
  const dt = document.createElement('dt'); dt.textContent = k;
  const dd = document.createElement('dd'); dd.textContent = v;
  meta.append(dt, dd);
}

function show(i) {
  const e = data.entries[i];
  if (!e) return;
  if (current >= 0) evs[current].classList.remove('selected');
  current = i;
  evs[i].classList.add('selected');
  evs[i].scrollIntoView({ block: 'nearest' });
  title.textContent = e.kind + ': ' + e.label;
  meta.replaceChildren();
  row('seq', String(e.seq));
  row('time', new Date(e.at).toISOString() + '  (+' + ((e.at - data.t0) / 1000).toFixed(3) + ' s)');
  row('task', e.taskId);
  row('lane', e.lane);
  if (e.ok !== undefined && e.kind === 'state') row('check', e.ok ? 'rebuilt = recorded' : 'rebuilt ≠ recorded');
  else if (e.ok !== undefined) row('outcome', e.ok ? 'ok' : 'failed');
  if (e.durationMs !== undefined) row('took', e.durationMs + ' ms');
  if (e.state !== undefined) row('rebuilt state', e.state);
  if (data.divergence && e.diverged) row('divergence', data.divergence.message);
  pre.textContent = e.payload === undefined ? '(no payload)' : JSON.stringify(e.payload, null, 2);
  history.replaceState(null, '', '#e' + i);
}

document.addEventListener('click', (ev) => {
  const b = ev.target.closest('.ev');
  if (b) { show(Number(b.dataset.i)); return; }
  const s = ev.target.closest('.state[data-state]');
  if (!s) return;
  // A state of the chart: light up the entries after which the task was in it.
  const task = s.closest('[data-task]').dataset.task, name = s.dataset.state;
  evs.forEach((b, i) => {
    const e = data.entries[i];
    const v = e.state ? JSON.parse(e.state) : null;
    const top = typeof v === 'string' ? v : v ? Object.keys(v)[0] : null;
    b.classList.toggle('hl', e.taskId === task && top === name);
  });
});

document.addEventListener('keydown', (ev) => {
  if (ev.key === 'ArrowDown' || ev.key === 'j') { show(Math.min(evs.length - 1, current + 1)); ev.preventDefault(); }
  if (ev.key === 'ArrowUp' || ev.key === 'k') { show(Math.max(0, current - 1)); ev.preventDefault(); }
});

const m = /^#e(\\d+)$/.exec(location.hash);
if (m) show(Number(m[1]));
else if (data.divergence) show(data.entries.findIndex((e) => e.diverged));
`;
