/**
 * Valid OCI runtime specs (config.json) as maps, the shape `parseSpec` accepts (src/kata/oci.ts): the
 * sections Corral reads, with values in range, and the annotations that steer a create (container type,
 * sandbox id, VM size). The fuzz files break them one field at a time.
 */
import fc from 'fast-check';

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,7}$/);
const abs = fc.stringMatching(/^(?:\/[a-z0-9._-]{1,8}){1,3}$/);
const capName = fc.constantFrom('CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_ADMIN');
const u32 = fc.nat(65535);

const process = fc.record(
  {
    terminal: fc.boolean(),
    user: fc.record({ uid: u32, gid: u32, additionalGids: fc.array(u32, { maxLength: 3 }) }, { requiredKeys: [] }),
    args: fc.array(fc.stringMatching(/^[a-z/.-]{1,10}$/), { minLength: 1, maxLength: 3 }),
    env: fc.array(fc.stringMatching(/^[A-Z_]{1,6}=[a-z0-9=]{0,6}$/), { maxLength: 3 }),
    cwd: fc.constantFrom('/', '/tmp', '/srv/app'),
    capabilities: fc.oneof(
      fc.array(capName, { maxLength: 3 }),
      fc.record(
        { bounding: fc.array(capName, { maxLength: 2 }), effective: fc.array(capName, { maxLength: 2 }) },
        { requiredKeys: [] },
      ),
    ),
    noNewPrivileges: fc.boolean(),
  },
  { requiredKeys: ['args'] },
);

/** What a mount can be in config.json: binds of host paths and devices, the guest's filesystems, emptyDirs. */
export const ociMount = fc.oneof(
  fc.record({
    destination: abs,
    type: fc.constant('bind'),
    source: abs,
    options: fc.array(fc.constantFrom('rbind', 'ro', 'nosuid', 'rprivate'), { maxLength: 3 }),
  }),
  fc.record({
    destination: fc.constantFrom(
      '/proc',
      '/dev',
      '/dev/pts',
      '/dev/shm',
      '/dev/mqueue',
      '/sys',
      '/sys/fs/cgroup',
      '/tmp',
    ),
    type: fc.constantFrom('proc', 'tmpfs', 'devpts', 'mqueue', 'sysfs', 'cgroup', 'cgroup2'),
    source: fc.constantFrom('proc', 'tmpfs', 'devpts', 'mqueue', 'sysfs', 'cgroup', 'shm'),
    options: fc.array(fc.constantFrom('nosuid', 'noexec', 'nodev', 'ro', 'mode=755', 'size=65536k', 'newinstance'), {
      maxLength: 4,
    }),
  }),
  fc.record({
    destination: abs,
    type: fc.constant('bind'),
    source: fc.constantFrom(
      '/dev/null',
      '/dev/zero',
      '/dev/urandom',
      '/var/lib/kubelet/pods/p/volumes/kubernetes.io~empty-dir/v',
    ),
    options: fc.constant(['rbind']),
  }),
);

export const ociResources = fc.record(
  {
    cpu: fc.record(
      {
        quota: fc.constantFrom(-1, 0, 1000, 50_000, 150_000),
        period: fc.constantFrom(0, 1000, 100_000, 1_000_000),
        shares: fc.constantFrom(0, 2, 1024, 262144),
        cpus: fc.constantFrom('', '0', '0-1', '0,2'),
      },
      { requiredKeys: [] },
    ),
    memory: fc.record(
      {
        limit: fc.constantFrom(-1, 0, 256 * 1048576, 2 ** 33),
        swap: fc.constantFrom(-1, 0),
        reservation: fc.constantFrom(0, 1048576),
      },
      { requiredKeys: [] },
    ),
    pids: fc.record({ limit: fc.integer({ min: -1, max: 4096 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);

const H = 'io.katacontainers.config.hypervisor.';
const containerType = fc.oneof(
  fc.constant([]),
  fc.constantFrom('sandbox', 'podsandbox').map((t) => [['io.kubernetes.cri.container-type', t]]),
  name.map((sb) => [
    ['io.kubernetes.cri.container-type', 'container'],
    ['io.kubernetes.cri.sandbox-id', sb],
  ]),
);
const annotation = fc.oneof(
  fc.tuple(fc.constant(`${H}default_vcpus`), fc.constantFrom('1', '2', '8')),
  fc.tuple(fc.constant(`${H}default_memory`), fc.constantFrom('256', '512', '4096')),
  fc.tuple(
    fc.constantFrom('io.kubernetes.cri.sandbox-cpu-quota', 'io.kubernetes.cri.sandbox-cpu-period'),
    fc.constantFrom('0', '50000', '100000'),
  ),
  fc.tuple(fc.constant('io.kubernetes.cri.sandbox-memory'), fc.constantFrom('0', '268435456')),
  fc.tuple(
    name.map((n) => `example.com/${n}`),
    name,
  ),
);

const hook = fc.record(
  { path: abs, args: fc.array(name, { maxLength: 2 }), env: fc.constant([]), timeout: fc.nat(30) },
  { requiredKeys: ['path'] },
);

export const ociSpec = fc.record(
  {
    ociVersion: fc.constant('1.0.2'),
    hostname: fc.stringMatching(/^[a-z0-9-]{0,12}$/),
    process,
    root: fc.record({ path: fc.constantFrom('rootfs', 'sub/rootfs', '/abs/rootfs'), readonly: fc.boolean() }),
    mounts: fc.array(ociMount, { maxLength: 4 }),
    annotations: fc
      .tuple(containerType, fc.array(annotation, { maxLength: 3 }))
      .map(([t, kv]) => Object.fromEntries([...t, ...kv])),
    linux: fc.record(
      {
        resources: ociResources,
        namespaces: fc.array(
          fc.record({ type: fc.constantFrom('pid', 'network', 'ipc', 'uts', 'mount'), path: fc.constant('') }),
          { maxLength: 3 },
        ),
        devices: fc.array(
          fc.record({ type: fc.constantFrom('c', 'b', 'u', 'p'), path: abs, major: u32, minor: u32, fileMode: u32 }),
          { maxLength: 2 },
        ),
      },
      { requiredKeys: ['resources'] },
    ),
    hooks: fc.record({ prestart: fc.array(hook, { maxLength: 1 }), poststop: fc.array(hook, { maxLength: 1 }) }),
  },
  { requiredKeys: ['process', 'root', 'linux'] },
);
