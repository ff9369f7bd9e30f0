/**
 * `corral install` / `uninstall` and `corral shim install` into a private root, as a user runs them (the
 * real CLI): what is added, what is kept (a configuration.toml that exists, a file changed since), that the
 * written config points at the installed guest, and that uninstall leaves the root as it was.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/node.ts';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});
function corral(args: string[]) {
  try {
    const stdout = execFileSync(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), ...args], {
      cwd: REPO,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { code: 0, stdout };
  } catch (e) {
    const x = e as { status: number; stdout: string; stderr: string };
    return { code: x.status, stdout: x.stdout, stderr: x.stderr };
  }
}
const files = (root: string): string[] =>
  execFileSync('find', [root, '-type', 'f'], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();

describe('corral install', () => {
  it('adds the guest, a config pointing at it, corral.env, systemd units and the shim; uninstall removes them', () => {
    const root = mkdtempSync('/tmp/crl-root-');
    roots.push(root);
    const r = corral(['install', '--root', root, '--nats', 'nats://10.9.9.9:4222', '--node', 'n1', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { installed: string[]; kept: string[]; containerdConfig: string };
    expect(out.kept).toEqual([]);
    expect(out.containerdConfig).toContain('runtime_type = "io.containerd.corral.v2"');
    const config = readFileSync(join(root, 'etc/corral/configuration.toml'), 'utf8');
    expect(config).toContain(`kernel = "${root}/usr/share/corral/guest/vmlinux"`);
    expect(existsSync(join(root, 'usr/share/corral/guest/vmlinux'))).toBe(true);
    expect(readFileSync(join(root, 'etc/corral/corral.env'), 'utf8')).toMatch(/^NATS_URL=nats:\/\/10\.9\.9\.9:4222$/m);
    expect(readFileSync(join(root, 'etc/systemd/system/corral-agent.service'), 'utf8')).toContain(
      `ExecStart=${REPO}/bin/corral.mjs agent`,
    );
    const shim = join(root, 'usr/local/bin/containerd-shim-corral-v2');
    expect(statSync(shim).mode & 0o111).toBe(0o111);
    expect(readFileSync(shim, 'utf8')).toMatch(/^export CORRAL_NODE='n1'$/m);
    const u = corral(['uninstall', '--root', root]);
    expect(u.code).toBe(0);
    expect(u.stdout).toContain(`removed ${shim}`);
    expect(files(root)).toEqual([]);
  });

  it('keeps a configuration.toml that exists, and a file changed since install', () => {
    const root = mkdtempSync('/tmp/crl-root-');
    roots.push(root);
    mkdirSync(join(root, 'etc/corral'), { recursive: true });
    writeFileSync(join(root, 'etc/corral/configuration.toml'), '# mine\n');
    const r = corral(['install', '--root', root]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`kept ${root}/etc/corral/configuration.toml (it exists; not overwritten)`);
    expect(corral(['install', '--root', root]).code).toBe(0); // again (an upgrade): idempotent
    const unit = join(root, 'etc/systemd/system/corral-agent.service');
    writeFileSync(unit, readFileSync(unit, 'utf8') + '# edited\n');
    const u = corral(['uninstall', '--root', root]);
    expect(u.stdout).toContain(`kept ${unit} (changed since it was installed)`);
    expect(files(root)).toEqual([unit, join(root, 'etc/corral/configuration.toml')].sort());
    expect(readFileSync(join(root, 'etc/corral/configuration.toml'), 'utf8')).toBe('# mine\n');
  });

  it('shim install/uninstall alone', () => {
    const root = mkdtempSync('/tmp/crl-root-');
    roots.push(root);
    expect(corral(['shim', 'install', '--root', root, '--bin-dir', '/bin']).code).toBe(0);
    expect(files(root)).toEqual([
      join(root, 'bin/containerd-shim-corral-v2'),
      join(root, 'var/lib/corral/installed.json'),
    ]);
    expect(corral(['shim', 'uninstall', '--root', root]).stdout).toContain('removed');
    expect(files(root)).toEqual([]);
  });

  it('the shim launcher written by `corral` as users run it (bin/corral.mjs: dist/ when built) runs the shim', () => {
    // Found in review: written from dist/, the launcher named dist/shim/main.ts, which does not exist.
    const root = mkdtempSync('/tmp/crl-root-');
    roots.push(root);
    execFileSync(
      process.execPath,
      [join(REPO, 'bin/corral.mjs'), 'shim', 'install', '--root', root, '--bin-dir', '/'],
      {
        stdio: 'ignore',
      },
    );
    let stderr = '';
    try {
      execFileSync(join(root, 'containerd-shim-corral-v2'), [], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      stderr = (e as { stderr: string }).stderr;
    }
    // The shim itself answered: run with no action, it says how containerd runs it.
    expect(stderr).toMatch(/^containerd-shim-corral-v2: InvalidArgument: no action: containerd runs this shim/);
  });

  it('bad use of shim install is a one-line error', () => {
    const bad = corral(['shim', 'frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^corral: InvalidArgument: usage: corral shim install/);
  });
});
