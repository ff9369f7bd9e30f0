/**
 * A small promise client for the CRI `runtime.v1` RuntimeService and ImageService (the subset in
 * api.proto), as kubelet talks to containerd's CRI plugin: gRPC over the unix socket `address`.
 * api.proto is loaded at runtime with @grpc/proto-loader: field names camelCase (`podSandboxId`),
 * enums as their names (`'CONTAINER_RUNNING'`), 64-bit integers as decimal strings (nanosecond
 * timestamps do not fit a double), bytes as Buffers, unset scalars as their defaults. Requests may
 * leave out any field. A failed call rejects with grpc-js's ServiceError (`code`, `details`).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = fileURLToPath(new URL('./api.proto', import.meta.url));

/** What a request may hold: any field left out, at any depth. */
export type Req<T> = {
  [K in keyof T]?: T[K] extends (infer U)[] ? Req<U>[] : T[K] extends object ? Req<T[K]> : T[K];
};
type Labels = Record<string, string>;
/** int64 / uint64 as proto-loader gives them (`longs: String`); requests may pass numbers. */
export type Int64 = string;

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}
export interface SecurityProfile {
  profileType: 'RuntimeDefault' | 'Unconfined' | 'Localhost';
  localhostRef: string;
}
export interface NamespaceOption {
  network: NamespaceMode;
  pid: NamespaceMode;
  ipc: NamespaceMode;
  targetId: string;
}
export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname: string;
  logDirectory: string;
  dnsConfig: { servers: string[]; searches: string[]; options: string[] };
  labels: Labels;
  annotations: Labels;
  linux: {
    cgroupParent: string;
    securityContext: {
      namespaceOptions: NamespaceOption;
      runAsUser: { value: Int64 | number };
      runAsGroup: { value: Int64 | number };
      readonlyRootfs: boolean;
      supplementalGroups: (Int64 | number)[];
      privileged: boolean;
      seccomp: SecurityProfile;
      apparmor: SecurityProfile;
    };
    sysctls: Labels;
  };
}
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  createdAt: Int64;
  network: { ip: string } | null;
  labels: Labels;
  annotations: Labels;
  runtimeHandler: string;
}
export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata;
  state: PodSandboxState;
  createdAt: Int64;
  labels: Labels;
  annotations: Labels;
  runtimeHandler: string;
}

export interface ImageSpec {
  image: string;
  annotations: Labels;
}
export interface Mount {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  selinuxRelabel: boolean;
  propagation: 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
}
export interface ContainerMetadata {
  name: string;
  attempt: number;
}
export interface ContainerConfig {
  metadata: ContainerMetadata;
  image: ImageSpec;
  command: string[];
  args: string[];
  workingDir: string;
  envs: { key: string; value: string }[];
  mounts: Mount[];
  labels: Labels;
  annotations: Labels;
  logPath: string;
  stdin: boolean;
  stdinOnce: boolean;
  tty: boolean;
  linux: {
    resources: {
      cpuPeriod: Int64 | number;
      cpuQuota: Int64 | number;
      cpuShares: Int64 | number;
      memoryLimitInBytes: Int64 | number;
      oomScoreAdj: Int64 | number;
      cpusetCpus: string;
      cpusetMems: string;
      memorySwapLimitInBytes: Int64 | number;
    };
    securityContext: {
      privileged: boolean;
      namespaceOptions: NamespaceOption;
      runAsUser: { value: Int64 | number };
      runAsGroup: { value: Int64 | number };
      readonlyRootfs: boolean;
      noNewPrivs: boolean;
      seccomp: SecurityProfile;
      apparmor: SecurityProfile;
    };
  };
}
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export interface Container {
  id: string;
  podSandboxId: string;
  metadata: ContainerMetadata;
  image: ImageSpec;
  imageRef: string;
  state: ContainerState;
  createdAt: Int64;
  labels: Labels;
  annotations: Labels;
}
export interface ContainerStatus {
  id: string;
  metadata: ContainerMetadata;
  state: ContainerState;
  createdAt: Int64;
  startedAt: Int64;
  finishedAt: Int64;
  exitCode: number;
  image: ImageSpec;
  imageRef: string;
  reason: string;
  message: string;
  labels: Labels;
  annotations: Labels;
  mounts: Mount[];
  logPath: string;
}
type U64 = { value: Int64 } | null;
export interface ContainerStats {
  attributes: { id: string; metadata: ContainerMetadata; labels: Labels; annotations: Labels };
  cpu: { timestamp: Int64; usageCoreNanoSeconds: U64; usageNanoCores: U64 } | null;
  memory: {
    timestamp: Int64;
    workingSetBytes: U64;
    availableBytes: U64;
    usageBytes: U64;
    rssBytes: U64;
    pageFaults: U64;
    majorPageFaults: U64;
  } | null;
  writableLayer: {
    timestamp: Int64;
    fsId: { mountpoint: string };
    usedBytes: U64;
    inodesUsed: U64;
  } | null;
}
export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: Int64;
  uid: { value: Int64 } | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}

/** Each RPC: request type, response type. */
type RuntimeRpcs = {
  Version: [
    { version: string },
    { version: string; runtimeName: string; runtimeVersion: string; runtimeApiVersion: string },
  ];
  RunPodSandbox: [{ config: PodSandboxConfig; runtimeHandler: string }, { podSandboxId: string }];
  StopPodSandbox: [{ podSandboxId: string }, object];
  RemovePodSandbox: [{ podSandboxId: string }, object];
  PodSandboxStatus: [{ podSandboxId: string; verbose: boolean }, { status: PodSandboxStatus; info: Labels }];
  ListPodSandbox: [
    { filter: { id: string; state: { state: PodSandboxState }; labelSelector: Labels } },
    { items: PodSandbox[] },
  ];
  CreateContainer: [
    { podSandboxId: string; config: ContainerConfig; sandboxConfig: PodSandboxConfig },
    { containerId: string },
  ];
  StartContainer: [{ containerId: string }, object];
  StopContainer: [{ containerId: string; timeout: Int64 | number }, object];
  RemoveContainer: [{ containerId: string }, object];
  ListContainers: [
    {
      filter: { id: string; state: { state: ContainerState }; podSandboxId: string; labelSelector: Labels };
    },
    { containers: Container[] },
  ];
  ContainerStatus: [{ containerId: string; verbose: boolean }, { status: ContainerStatus; info: Labels }];
  /** `timeout` in seconds; 0: none. */
  ExecSync: [
    { containerId: string; cmd: string[]; timeout: Int64 | number },
    { stdout: Buffer; stderr: Buffer; exitCode: number },
  ];
  ContainerStats: [{ containerId: string }, { stats: ContainerStats }];
};
type ImageRpcs = {
  ListImages: [{ filter: { image: ImageSpec } }, { images: Image[] }];
  ImageStatus: [{ image: ImageSpec; verbose: boolean }, { image: Image | null; info: Labels }];
};
export interface CallOptions {
  /** Deadline of the call. @default 60000 */
  timeoutMs?: number;
}
type Client<R extends Record<string, [unknown, unknown]>> = {
  [M in keyof R as Uncapitalize<M & string>]: (req: Req<R[M][0]>, o?: CallOptions) => Promise<R[M][1]>;
};
export type CriClient = Client<RuntimeRpcs> & { images: Client<ImageRpcs>; close(): void };

const RUNTIME_METHODS: (keyof RuntimeRpcs)[] = [
  'Version',
  'RunPodSandbox',
  'StopPodSandbox',
  'RemovePodSandbox',
  'PodSandboxStatus',
  'ListPodSandbox',
  'CreateContainer',
  'StartContainer',
  'StopContainer',
  'RemoveContainer',
  'ListContainers',
  'ContainerStatus',
  'ExecSync',
  'ContainerStats',
];
const IMAGE_METHODS: (keyof ImageRpcs)[] = ['ListImages', 'ImageStatus'];

type Unary = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, res?: unknown) => void,
) => void;

let loaded: grpc.GrpcObject | undefined;
function definitions(): grpc.GrpcObject {
  loaded ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true }),
  );
  return loaded;
}

function bind<R extends Record<string, [unknown, unknown]>>(raw: grpc.Client, methods: (keyof R & string)[]) {
  const out: Record<string, (req: unknown, o?: CallOptions) => Promise<unknown>> = {};
  for (const m of methods) {
    const fn = (raw as unknown as Record<string, Unary>)[m]!.bind(raw);
    out[m[0]!.toLowerCase() + m.slice(1)] = (req, o = {}) =>
      new Promise((res, rej) =>
        fn(req, new grpc.Metadata(), { deadline: Date.now() + (o.timeoutMs ?? 60_000) }, (e, r) =>
          e ? rej(e) : res(r),
        ),
      );
  }
  return out as Client<R>;
}

/** A client of the CRI server on the unix socket `address` (containerd's gRPC socket). */
export function criClient(address: string): CriClient {
  const pkg = (definitions().runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const ctor = (name: string) => pkg[name] as grpc.ServiceClientConstructor;
  const target = `unix:${address}`;
  const creds = grpc.credentials.createInsecure();
  const runtime = new (ctor('RuntimeService'))(target, creds);
  const image = new (ctor('ImageService'))(target, creds);
  return {
    ...bind<RuntimeRpcs>(runtime, RUNTIME_METHODS),
    images: bind<ImageRpcs>(image, IMAGE_METHODS),
    close() {
      runtime.close();
      image.close();
    },
  };
}
