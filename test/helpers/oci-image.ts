/**
 * OCI image archives for containerd tests, built offline from Debian's busybox-static: one uncompressed layer
 * (/bin/busybox, a /bin symlink per `busybox --list` applet, /etc/passwd and /etc/group for root, empty /proc,
 * /sys, /dev, /tmp, /root), an amd64/linux config, a manifest, `oci-layout` and an `index.json` whose manifest
 * carries `io.containerd.image.name`: what `ctr images import` takes. Every tar is made with deterministic
 * flags, so the same busybox, name and Cmd give the same bytes; the archive is cached in `dir` under a name
 * derived from those, and a second call returns the cached path without building.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const BUSYBOX = '/bin/busybox';
const TAR_FLAGS = ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=gnu'];
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MT = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
};

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** The busybox image (default Cmd `["sh"]`); resolves with the archive's path. */
export function buildBusyboxImage(dir: string, o: { name?: string } = {}): Promise<string> {
  return buildImage(dir, o.name ?? 'docker.io/library/busybox-local:latest', ['sh']);
}

/** A CRI sandbox ("pause") image: the busybox base running `sleep infinity`. */
export function buildPauseImage(dir: string, o: { name?: string } = {}): Promise<string> {
  return buildImage(dir, o.name ?? 'registry.k8s.io/pause:3.6', ['sleep', 'infinity']);
}

async function buildImage(dir: string, name: string, cmd: string[]): Promise<string> {
  const key = sha256(JSON.stringify({ v: 1, busybox: sha256(readFileSync(BUSYBOX)), name, cmd })).slice(0, 16);
  const archive = join(dir, `oci-${key}.tar`);
  if (existsSync(archive)) return archive;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, '.build-'));
  try {
    const root = join(work, 'rootfs');
    for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root']) mkdirSync(join(root, d), { recursive: true });
    chmodSync(root, 0o755);
    for (const d of ['bin', 'etc', 'proc', 'sys', 'dev']) chmodSync(join(root, d), 0o755);
    chmodSync(join(root, 'tmp'), 0o1777);
    chmodSync(join(root, 'root'), 0o700);
    copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', join(root, 'bin', a));
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n', { mode: 0o644 });
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n', { mode: 0o644 });

    const oci = join(work, 'oci');
    const blobs = join(oci, 'blobs/sha256');
    mkdirSync(blobs, { recursive: true });
    const layerTmp = join(work, 'layer.tar');
    execFileSync('tar', [...TAR_FLAGS, '-C', root, '-cf', layerTmp, '.']);
    const layer = readFileSync(layerTmp);
    const blob = (b: Buffer | string) => {
      const digest = sha256(b);
      writeFileSync(join(blobs, digest), b);
      return { digest: `sha256:${digest}`, size: Buffer.byteLength(b) };
    };
    const layerDesc = { mediaType: MT.layer, ...blob(layer) };
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: [PATH_ENV], Cmd: cmd, WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [layerDesc.digest] }, // uncompressed: diff id = layer digest
      history: [{ created_by: 'test/helpers/oci-image.ts' }],
    });
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.manifest,
      config: { mediaType: MT.config, ...blob(config) },
      layers: [layerDesc],
    });
    const index = {
      schemaVersion: 2,
      mediaType: MT.index,
      manifests: [
        {
          mediaType: MT.manifest,
          ...blob(manifest),
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: { 'io.containerd.image.name': name },
        },
      ],
    };
    writeFileSync(join(oci, 'index.json'), JSON.stringify(index));
    writeFileSync(join(oci, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    const out = join(work, 'image.tar');
    execFileSync('tar', [...TAR_FLAGS, '-C', oci, '-cf', out, 'blobs', 'index.json', 'oci-layout']);
    renameSync(out, archive); // atomic: a cached archive is always whole
    return archive;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
