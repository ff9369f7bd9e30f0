/**
 * Network benchmarks (issue 10), on the test network of test/helpers/test-net.ts (a bridge in a namespace of
 * its own, CNI pod namespaces; nothing in the host's root namespace):
 *
 *   guest → host ns   MB/s of 64 MiB sent by `dd | nc` in a tcfilter guest (and a macvtap one) to a TCP sink in
 *                     a test namespace on the bridge; baseline: the same `dd | nc` from a plain pod namespace (no VM)
 *   host ns → guest   MB/s of 64 MiB sent from the test namespace to `nc -l` in the guest; baseline: to `nc -l`
 *                     in a plain pod namespace
 *   first output      create → the first byte of stdout of `echo`, with the network on (tcfilter, a CNI
 *                     namespace) and off (the shipped `none`)
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { localRuntimeConfig } from '../src/cli/commands/up.ts';
import { subjects } from '../src/bus/subjects.ts';
import { DEFAULT_MOUNTS, REPO, testNode, type TestNode } from '../test/helpers/node.ts';
import { TestNet, type Pod } from '../test/helpers/test-net.ts';

const BLOCKS = 1024; // of 64 KiB: 64 MiB
const BYTES = BLOCKS * 65536;
const PORT = 5001;

interface Transfer {
  bytes: number;
  ms: number;
}

/** A node process in a namespace: `ready` once it prints `ready`, `done` with the JSON line it prints last. */
function inNs(pod: Pod, script: string, args: string[]): { ready: Promise<void>; done: Promise<Transfer> } {
  const proc = spawn('nsenter', [`--net=${pod.netns}`, '--', process.execPath, '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let isReady!: () => void;
  const ready = new Promise<void>((r) => (isReady = r));
  const done = new Promise<Transfer>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) isReady();
    });
    proc.once('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) resolve(JSON.parse(line) as Transfer);
      else reject(new Error(`bench helper in ${pod.name} exited ${code}: ${out}`));
    });
  });
  return { ready, done };
}

/** Counts what one connection sends, from its first byte to its end. */
const SINK = `const n = require('net'); let b = 0, t0 = 0;
const s = n.createServer((c) => { c.on('data', (d) => { if (!t0) t0 = performance.now(); b += d.length; });
  c.on('end', () => { console.log(JSON.stringify({ bytes: b, ms: performance.now() - t0 })); s.close(); }); });
s.listen(+process.argv[1], () => console.log('ready'));`;
/** Sends N bytes to host:port (retrying the connect until something listens), timed until the peer closes. */
const SOURCE = `const n = require('net'); const [h, p, bytes] = [process.argv[1], +process.argv[2], +process.argv[3]];
const buf = Buffer.alloc(65536); const go = () => { const c = n.connect(p, h); let t0 = 0, sent = 0;
  c.on('error', () => setTimeout(go, 50));
  c.on('connect', () => { t0 = performance.now(); const w = () => { while (sent < bytes) { sent += buf.length;
    if (!c.write(buf)) return c.once('drain', w); } c.end(); }; w(); });
  c.on('close', (err) => { if (!err && t0) console.log(JSON.stringify({ bytes: sent, ms: performance.now() - t0 })); });
}; go();`;

const mbs = (r: Transfer) => r.bytes / 1048576 / (r.ms / 1000);

async function guestRun(n: TestNode, id: string, pod: Pod | undefined, script: string, config?: string) {
  // runc's default mounts: /dev (with /dev/zero and /dev/null) in the container
  const b = n.bundle(id, { args: ['sh', '-c', script], mounts: DEFAULT_MOUNTS, ...(pod ? { netns: pod.netns } : {}) });
  await n.call('create', { id, bundle: b, ...(config ? { options: { configPath: config } } : {}) });
  await n.call('start', { id });
  const r = await n.call<{ exitStatus: number }>('wait', { id });
  await n.call('delete', { id });
  if (r.exitStatus !== 0) throw new Error(`${id} exited ${r.exitStatus}`);
}

/** Create → first stdout byte of `echo hi`, in ms. */
async function firstOutput(n: TestNode, id: string, pod: Pod | undefined, config?: string): Promise<number> {
  const b = n.bundle(id, { args: ['echo', 'hi'], ...(pod ? { netns: pod.netns } : {}) });
  let first = 0;
  const sub = n.nc.subscribe(subjects.io(n.node, id, 'stdout'), {
    max: 1,
    callback: () => {
      first = performance.now();
    },
  });
  await n.nc.flush();
  const t0 = performance.now();
  await n.call('create', { id, bundle: b, ...(config ? { options: { configPath: config } } : {}) });
  await n.call('start', { id });
  await n.call('wait', { id });
  await n.nc.flush();
  await n.call('delete', { id });
  sub.unsubscribe();
  if (!first) throw new Error(`${id}: no output`);
  return first - t0;
}

export async function benchNetwork(runs: number) {
  const net = new TestNet('b', '10.231.9.0/24');
  const n = await testNode();
  try {
    const config = (model: string) => {
      const path = join(n.configs, `${model}.toml`);
      writeFileSync(
        path,
        localRuntimeConfig(join(REPO, '.corral/guest'))
          .replace('internetworking_model = "none"', `internetworking_model = "${model}"`)
          .replace('disable_new_netns = true', 'disable_new_netns = false'),
      );
      return path;
    };
    const tcfilter = config('tcfilter');
    const macvtap = config('macvtap');
    const host = await net.pod('host');
    const vm = await net.pod('vm');
    const plain = await net.pod('plain');
    const dd = `dd if=/dev/zero bs=65536 count=${BLOCKS} 2>/dev/null`;

    // guest → host namespace, and the same from a plain namespace (each sink listening before anyone sends)
    const sink1 = inNs(host, SINK, [String(PORT)]);
    await sink1.ready;
    await guestRun(n, 'bn-out', vm, `${dd} | nc -w 10 ${host.address} ${PORT}`, tcfilter);
    const guestOut = await sink1.done;
    const sink3 = inNs(host, SINK, [String(PORT)]);
    await sink3.ready;
    await guestRun(n, 'bn-mv', vm, `${dd} | nc -w 10 ${host.address} ${PORT}`, macvtap);
    const macvtapOut = await sink3.done;
    const sink2 = inNs(host, SINK, [String(PORT)]);
    await sink2.ready;
    const sh = `${dd} | busybox nc -w 10 ${host.address} ${PORT}`;
    spawn('nsenter', [`--net=${plain.netns}`, '--', 'sh', '-c', sh], { stdio: 'ignore' });
    const plainOut = await sink2.done;

    // host namespace → guest (nc -l in the guest), and the same to a plain namespace; the source retries its
    // connect until the listener is there
    const src1 = inNs(host, SOURCE, [vm.address, String(PORT), String(BYTES)]);
    await guestRun(n, 'bn-in', vm, `nc -l -p ${PORT} > /dev/null`, tcfilter);
    const guestIn = await src1.done;
    const listen = spawn('nsenter', [`--net=${plain.netns}`, '--', 'busybox', 'nc', '-l', '-p', String(PORT)], {
      stdio: 'ignore',
    });
    const plainIn = await inNs(host, SOURCE, [plain.address, String(PORT), String(BYTES)]).done;
    listen.kill();

    const on: number[] = [];
    const off: number[] = [];
    for (let i = 0; i < runs; i++) {
      on.push(await firstOutput(n, `bn-on-${i}`, vm, tcfilter));
      off.push(await firstOutput(n, `bn-off-${i}`, undefined));
    }
    return {
      guestToHostMBs: mbs(guestOut),
      macvtapGuestToHostMBs: mbs(macvtapOut),
      plainToHostMBs: mbs(plainOut),
      hostToGuestMBs: mbs(guestIn),
      hostToPlainMBs: mbs(plainIn),
      bytes: BYTES,
      firstOutputOn: on,
      firstOutputOff: off,
    };
  } finally {
    await n.cleanup();
    await net.down();
  }
}
