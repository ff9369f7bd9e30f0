/**
 * The shipped systemd units: restarting the agent must leave the workers (and so the VMs) running,
 * so no worker unit may be bound to the agent's (PartOf=, BindsTo=, Requisite= propagate its stop
 * and restart), and the agent pulls the workers in with a plain Wants=.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const unit = (name: string) => readFileSync(new URL(`../../infra/systemd/${name}`, import.meta.url), 'utf8');
const directives = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('['))
    .map((l) => l.split('=')[0]!);

describe('systemd units', () => {
  it('workers are not bound to the agent: an agent restart leaves them running', () => {
    const worker = directives(unit('corral-worker@.service'));
    for (const d of ['PartOf', 'BindsTo', 'Requisite']) expect(worker).not.toContain(d);
  });
  it('the agent wants both workers, and requires neither', () => {
    const text = unit('corral-agent.service');
    expect(text).toMatch(/^Wants=.*corral-worker@mount\.service/m);
    expect(text).toMatch(/^Wants=.*corral-worker@hypervisor\.service/m);
    expect(directives(text)).not.toContain('Requires');
  });
});
