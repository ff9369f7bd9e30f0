/**
 * The replay page of a real sandbox in a real browser: Debian's headless Chromium driven by
 * playwright-core (no browser download), network switched off. Checks the swimlanes, the visited
 * states in the statechart, a clicked payload, and that a hostile payload stays text.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replay } from '../../src/replay/engine.ts';
import { lanesOf, replayHtml } from '../../src/replay/html.ts';
import { readRecords } from '../../src/bus/eventlog-reader.ts';
import { readRecordsFile, writeRecordsFile } from '../../src/replay/records.ts';
import { testNode, type TestNode } from '../helpers/node.ts';
import { waitFor } from '../helpers/wait.ts';

const ID = 'view1';
let n: TestNode;
let browser: BrowserContext;
let profile: string;
let exported: string, page1: string;

beforeAll(async () => {
  n = await testNode();
  const b = n.bundle(ID, { args: ['sh', '-c', 'echo viewed; exit 0'] });
  const run = await n.cli(['run', '--id', ID, '--bundle', b, '--rm']);
  expect(run.code, run.stderr).toBe(0);
  await waitFor(
    async () => (await readRecords(n.nc, { sandbox: ID })).some((r) => r.kind === 'state' && r.value === 'deleted'),
    { timeoutMs: 30_000, intervalMs: 100, what: `the state record "deleted" of ${ID} in the log` },
  );
  exported = join(n.dataDir, `${ID}.jsonl`);
  page1 = join(n.dataDir, `${ID}.html`);
  expect((await n.cli(['events', 'export', '--sandbox', ID, '-o', exported])).code).toBe(0);
  expect(
    (await n.cli(['replay', ID, '--file', exported, '--html', page1], { NATS_URL: 'nats://127.0.0.1:1' })).code,
  ).toBe(0);

  profile = mkdtempSync(join(tmpdir(), 'corral-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 1000 },
  });
});
afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await n?.cleanup();
});

/** Opens a page; collects script errors and every request it makes (there must be none but the file). */
async function open(file: string): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [],
    requests: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`file://${file}`);
  return { page, errors, requests };
}

describe('the replay page in headless Chromium', () => {
  it('shows one swimlane per lane, the visited states, and a clicked payload', async () => {
    const r = await replay(readRecordsFile(exported));
    r.tasks.forEach((t) => t.actor.stop());
    const { page, errors, requests } = await open(page1);

    // Swimlanes: exactly the lanes the timeline has entries in, each visible and holding its entries.
    const lanes = await page.$$eval('.lane', (els) =>
      els.map((e) => `${(e as HTMLElement).dataset.lane}:${(e as HTMLElement).dataset.task ?? ''}`),
    );
    expect(lanes.sort()).toEqual(
      lanesOf(r.timeline)
        .map((l) => `${l.lane}:${l.task ?? ''}`)
        .sort(),
    );
    expect(lanes).toEqual(expect.arrayContaining(['sandbox:view1', 'agent:', 'worker:mount:', 'worker:hypervisor:']));
    for (const l of await page.$$('.lane')) expect((await l.boundingBox())!.height).toBeGreaterThan(200);
    expect(await page.locator('.ev').count()).toBe(r.timeline.length);

    // The statechart: the states this sandbox visited are marked, and only those.
    const task = r.tasks[0]!;
    const tops = [
      ...new Set(
        task.visited.map((v) => {
          const o = JSON.parse(v) as unknown;
          return typeof o === 'string' ? o : Object.keys(o as object)[0]!;
        }),
      ),
    ];
    const marked = await page.$$eval(`.task-chart[data-task="${ID}"] .state.visited`, (els) =>
      els.map((e) => (e as HTMLElement).dataset.state),
    );
    expect(marked.sort()).toEqual(tops.sort());
    expect(marked).toEqual(
      expect.arrayContaining(['validating', 'booting', 'created', 'running', 'stopping', 'deleted']),
    );
    expect(await page.$$eval('.substate.visited', (els) => els.map((e) => (e as HTMLElement).dataset.state))).toEqual([
      'running.idle',
    ]);
    expect(await page.getAttribute('.state.current', 'data-state')).toBe('deleted');
    const unvisited = await page.$$eval('.state:not(.visited)', (els) =>
      els.map((e) => (e as HTMLElement).dataset.state),
    );
    expect(unvisited).toEqual(expect.arrayContaining(['rollingBack', 'failed', 'stopped']));

    // Click the boot effect: its output, with the VMM pid, in the side panel.
    const pid = r.timeline.find((e) => e.label === 'created')!.payload as { pid: number };
    await page.click('.ev.k-effect:has-text("boot")');
    await waitFor(() => page.textContent('#p-json'), {
      until: (t) => !!t?.includes(`"pid": ${pid.pid}`),
      what: `the side panel to show the boot output with pid ${pid.pid}`,
    });
    expect(await page.textContent('#p-title')).toBe('effect: boot ok');
    expect(await page.textContent('#p-meta')).toContain('worker:hypervisor');
    expect(await page.getAttribute('.ev.selected', 'data-kind')).toBe('effect');

    // Keyboard: ↓ selects the next entry.
    const before = Number(await page.getAttribute('.ev.selected', 'data-i'));
    await page.keyboard.press('ArrowDown');
    expect(Number(await page.getAttribute('.ev.selected', 'data-i'))).toBe(before + 1);

    // The screenshot is kept only when asked for (CORRAL_KEEP_SCREENSHOT=1): a test leaves nothing in /tmp.
    const shot = join(tmpdir(), `corral-viewer-${process.pid}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    if (process.env.CORRAL_KEEP_SCREENSHOT) console.log(`viewer screenshot: ${shot}`);
    else rmSync(shot, { force: true });
    expect(errors).toEqual([]);
    expect(requests.every((u) => u.startsWith('file://'))).toBe(true);
    await page.close();
  });

  it('a hostile payload (</script>, markup) stays text and runs nothing', async () => {
    const evil = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">';
    const records = readRecordsFile(exported).map((x) =>
      x.effect === 'boot' ? { ...x, output: { ...(x.output as object), note: evil } } : x,
    );
    const file = join(n.dataDir, 'evil.jsonl');
    writeRecordsFile(file, records);
    const r = await replay(readRecordsFile(file));
    r.tasks.forEach((t) => t.actor.stop());
    const html = join(n.dataDir, 'evil.html');
    writeFileSync(
      html,
      replayHtml({ sandbox: `${ID}<script>window.pwned=3</script>`, node: n.node, source: file, result: r }),
    );
    const { page, errors, requests } = await open(html);
    await page.click('.ev.k-effect:has-text("boot")');
    expect(await page.textContent('#p-json')).toContain(JSON.stringify(evil).slice(1, -1));
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    expect(await page.textContent('h1')).toContain('<script>');
    expect(await page.locator('img').count()).toBe(0);
    expect(errors).toEqual([]);
    expect(requests.every((u) => u.startsWith('file://'))).toBe(true);
    await page.close();
  });
});
