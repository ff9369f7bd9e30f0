/**
 * The lifecycle statechart as a picture, derived from the machine definition itself (xstate v5 state
 * nodes: `root.states`, each node's `transitions`, `always`, `initial`), never hard-coded: a changed
 * machine draws a changed chart. Top-level states are boxes laid out in columns by longest path from
 * the initial state (back edges ignored); a compound state lists its substates inside its box. The
 * states a task visited are marked with the order of their visits.
 */
import type { LifecycleMachine } from '../machines/index.ts';
import { esc } from './html-escape.ts';

/** What the chart reads of an xstate state node (`machine.root` and its descendants are assignable to it). */
interface XNode {
  id: string;
  key: string;
  type: string;
  parent?: XNode;
  states: Record<string, XNode>;
  transitions: Map<string, readonly { target?: readonly XNode[]; guard?: unknown }[]>;
  always?: readonly { target?: readonly XNode[]; guard?: unknown }[];
  initial?: { target: readonly XNode[] };
  invoke: readonly { id: string }[];
}

export interface ChartState {
  key: string;
  type: string;
  children: string[];
  initialChild?: string;
  transient: boolean;
  invokes: string[];
}
export interface ChartEdge {
  from: string;
  to: string;
  events: string[];
}
export interface Chart {
  id: string;
  initial: string;
  states: ChartState[];
  edges: ChartEdge[];
}

/** `xstate.done.actor.boot` → `done: boot`. */
const eventName = (e: string) =>
  e.replace(/^xstate\.done\.actor\./, 'done: ').replace(/^xstate\.error\.actor\./, 'error: ');

/** The top-level states and the transitions between them (substate transitions count as their parent's). */
export function chartOf(machine: LifecycleMachine): Chart {
  const root: XNode = machine.root;
  const top = (n: XNode): XNode => (n.parent && n.parent !== root ? top(n.parent) : n);
  const edges = new Map<string, ChartEdge>();
  const visit = (n: XNode) => {
    const all = [...n.transitions]
      .flatMap(([ev, ts]) => ts.map((t) => [ev, t] as const))
      .concat((n.always ?? []).map((t) => ['always', t] as const));
    for (const [ev, t] of all) {
      for (const target of t.target ?? []) {
        const from = top(n).key,
          to = top(target).key;
        if (n === root || from === to) continue;
        const e = edges.get(`${from}>${to}`) ?? { from, to, events: [] };
        const name = eventName(ev) + (t.guard ? ' [guarded]' : '');
        if (!e.events.includes(name)) e.events.push(name);
        edges.set(`${from}>${to}`, e);
      }
    }
    Object.values(n.states).forEach(visit);
  };
  visit(root);
  const states = Object.values(root.states).map((n) => ({
    key: n.key,
    type: n.type,
    children: Object.keys(n.states),
    initialChild: n.initial?.target[0]?.key,
    transient: Boolean(n.always?.length) && !n.invoke.length && n.transitions.size === 0,
    invokes: n.invoke.map((i) => i.id),
  }));
  return { id: root.id, initial: root.initial!.target[0]!.key, states, edges: [...edges.values()] };
}

/** Columns by longest path from the initial state over a DFS tree's forward and cross edges. */
function layers(c: Chart): Map<string, number> {
  const out = new Map<string, string[]>();
  for (const e of c.edges) out.set(e.from, [...(out.get(e.from) ?? []), e.to]);
  const back = new Set<string>(),
    onStack = new Set<string>(),
    seen = new Set<string>();
  const dfs = (s: string) => {
    seen.add(s);
    onStack.add(s);
    for (const t of out.get(s) ?? []) {
      if (onStack.has(t)) back.add(`${s}>${t}`);
      else if (!seen.has(t)) dfs(t);
    }
    onStack.delete(s);
  };
  dfs(c.initial);
  for (const s of c.states) if (!seen.has(s.key)) dfs(s.key);
  const layer = new Map(c.states.map((s) => [s.key, 0]));
  for (let changed = true, guard = 0; changed && guard < c.states.length; guard++) {
    changed = false;
    for (const e of c.edges) {
      if (back.has(`${e.from}>${e.to}`) || layer.get(e.to)! > layer.get(e.from)!) continue;
      layer.set(e.to, layer.get(e.from)! + 1);
      changed = true;
    }
  }
  return layer;
}

/** Which top-level states (and `state.sub` substates) a visited value list touches, with visit ordinals. */
export function visitsOf(visited: string[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const add = (k: string, i: number) => {
    const a = m.get(k) ?? [];
    if (a[a.length - 1] !== i) a.push(i);
    m.set(k, a);
  };
  visited.forEach((json, i) => {
    const walk = (v: unknown, prefix: string) => {
      if (typeof v === 'string') {
        add(prefix + v, i + 1);
        return;
      }
      for (const [k, sub] of Object.entries(v as object)) {
        add(prefix + k, i + 1);
        walk(sub, `${prefix}${k}.`);
      }
    };
    walk(JSON.parse(json) as unknown, '');
  });
  return m;
}

const W_CHAR = 7,
  BOX_H = 30,
  SUB_H = 20,
  GAP_X = 40,
  GAP_Y = 16,
  PAD = 24;

/** The chart as inline SVG; visited states carry class `visited` and their visit ordinals. */
export function chartSvg(c: Chart, visited: string[]): string {
  const visits = visitsOf(visited);
  const current = visited.length ? visitsOf([visited[visited.length - 1]!]) : new Map<string, number[]>();
  const layer = layers(c);
  const width = (s: ChartState) =>
    Math.max(
      s.key.length * W_CHAR + 26,
      s.children.reduce((w, k) => w + k.length * 6 + 16, 10),
    );
  const height = (s: ChartState) => (s.children.length ? BOX_H + SUB_H + 6 : BOX_H);
  const cols: ChartState[][] = [];
  for (const s of c.states) (cols[layer.get(s.key)!] ??= []).push(s);
  // Fewer crossings: order each column by the mean row of its predecessors in earlier columns.
  const rowOf = new Map<string, number>();
  for (const col of cols) {
    if (!col) continue;
    const bary = (s: ChartState) => {
      const rows = c.edges
        .filter((e) => e.to === s.key && rowOf.has(e.from) && layer.get(e.from)! < layer.get(s.key)!)
        .map((e) => rowOf.get(e.from)!);
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
    };
    col.sort((a, b) => bary(a) - bary(b)).forEach((s, i) => rowOf.set(s.key, i - (col.length - 1) / 2));
  }
  const colH = cols.map((col) => (col ?? []).reduce((h, s) => h + height(s) + GAP_Y, -GAP_Y));
  const totalH = Math.max(...colH) + 2 * PAD + 16;
  const pos = new Map<string, { x: number; y: number; w: number; h: number }>();
  let x = PAD + 14;
  cols.forEach((col = [], i) => {
    const w = Math.max(...col.map(width));
    let y = (totalH - colH[i]!) / 2;
    for (const s of col) {
      pos.set(s.key, { x, y, w, h: height(s) });
      y += height(s) + GAP_Y;
    }
    x += w + GAP_X;
  });
  const totalW = x - GAP_X + PAD;

  // A transition into a transient state (no invoke, only `always`) and on out of it counts as taken.
  const order = visited.map((v) => {
    const o = JSON.parse(v) as unknown;
    return typeof o === 'string' ? o : Object.keys(o as object)[0]!;
  });
  const transient = new Set(c.states.filter((s) => s.transient).map((s) => s.key));
  const taken = new Set<string>();
  const has = (a: string, b: string) => c.edges.some((e) => e.from === a && e.to === b);
  for (let i = 1; i < order.length; i++) {
    const [a, b] = [order[i - 1]!, order[i]!];
    if (has(a, b)) taken.add(`${a}>${b}`);
    else
      for (const t of transient)
        if (has(a, t) && has(t, b)) {
          taken.add(`${a}>${t}`);
          taken.add(`${t}>${b}`);
        }
  }
  const passed = new Set([...taken].map((k) => k.split('>')[1]!).filter((k) => transient.has(k)));

  const edgeSvg = c.edges.map((e) => {
    const a = pos.get(e.from)!,
      b = pos.get(e.to)!;
    const cls = `edge${taken.has(`${e.from}>${e.to}`) ? ' taken' : ''}`;
    let d: string;
    if (b.x > a.x) {
      const [x1, y1, x2, y2] = [a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2];
      d = `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2 - 2},${y2}`;
    } else if (b.x < a.x) {
      // backwards: from the source's left, low, to the target's right, low
      const [x1, y1, x2, y2] = [a.x, a.y + a.h * 0.8, b.x + b.w, b.y + b.h * 0.8];
      d = `M${x1},${y1} C${x1 - GAP_X / 2},${y1 + 12} ${x2 + GAP_X / 2},${y2 + 12} ${x2 + 2},${y2}`;
    } else {
      // within a column: loop on the right
      const [x1, y1, x2, y2] = [a.x + a.w, a.y + a.h * 0.7, b.x + b.w, b.y + b.h * 0.3];
      d = `M${x1},${y1} C${x1 + 30},${y1} ${x2 + 30},${y2} ${x2 + 2},${y2}`;
    }
    const title = esc(`${e.from} → ${e.to}: ${e.events.join(', ')}`);
    return `<path class="${cls}" d="${d}" marker-end="url(#arrow)"><title>${title}</title></path>`;
  });

  const boxSvg = c.states.map((s) => {
    const p = pos.get(s.key)!;
    const v = visits.get(s.key);
    const cls = [
      'state',
      v ? 'visited' : passed.has(s.key) ? 'passed' : '',
      current.has(s.key) ? 'current' : '',
      s.type === 'final' ? 'final' : '',
    ]
      .filter(Boolean)
      .join(' ');
    const invokes = s.invokes.length ? `, invokes ${s.invokes.join(', ')}` : '';
    const kind = `${s.type}${s.transient ? ', transient' : ''}${invokes}`;
    const tip = `${s.key} (${kind})${v ? `: visit ${v.join(', ')}` : ''}`;
    let sub = '',
      sx = p.x + 6;
    for (const k of s.children) {
      const sv = visits.get(`${s.key}.${k}`);
      const w = k.length * 6 + 10;
      sub +=
        `<g class="substate${sv ? ' visited' : ''}" data-state="${esc(`${s.key}.${k}`)}">` +
        `<rect x="${sx}" y="${p.y + BOX_H}" width="${w}" height="${SUB_H - 4}" rx="8"/>` +
        `<text x="${sx + w / 2}" y="${p.y + BOX_H + 12}">${esc(k)}</text>` +
        `<title>${esc(`${s.key}.${k}${sv ? `: visit ${sv.join(', ')}` : ''}`)}</title></g>`;
      sx += w + 6;
    }
    const badge = v ? `<text class="visits" x="${p.x + p.w - 4}" y="${p.y - 4}">${esc(v.join(','))}</text>` : '';
    const inner =
      s.type === 'final'
        ? `<rect class="inner" x="${p.x + 3}" y="${p.y + 3}" width="${p.w - 6}" height="${p.h - 6}" rx="4"/>`
        : '';
    return (
      `<g class="${cls}" data-state="${esc(s.key)}">` +
      `<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" rx="6"/>${inner}` +
      `<text x="${p.x + p.w / 2}" y="${p.y + 19}">${esc(s.key)}</text>${sub}${badge}<title>${esc(tip)}</title></g>`
    );
  });
  const init = pos.get(c.initial)!;
  const midY = init.y + init.h / 2;
  const svgAttrs = `viewBox="0 0 ${totalW} ${totalH}" width="${totalW}" height="${totalH}"`;
  return `<svg class="chart" ${svgAttrs} role="img" aria-label="${esc(`statechart of ${c.id}`)}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" \
orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>
<circle class="initial" cx="${PAD - 4}" cy="${midY}" r="5"/>\
<path class="edge taken" d="M${PAD + 1},${midY} L${init.x - 2},${midY}" marker-end="url(#arrow)"/>
${edgeSvg.join('\n')}
${boxSvg.join('\n')}
</svg>`;
}
