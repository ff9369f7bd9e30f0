/**
 * The layer rules (issue 7, item 4; docs/architecture.md). `npm run lint` runs
 * `depcruise src bench infra --config .dependency-cruiser.cjs`; any violation is an error and fails CI.
 *
 * The layers, lowest first: errors.ts ← domain ← machines; errors.ts ← kata; bus (the wire) ← fleet,
 * workers; and agent, replay, shim and cli on top. Type-only imports count: a type import across a layer
 * ties the two layers' shapes together just as a value import does.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'nothing-imports-the-simulator',
      comment:
        'sim/ (the deterministic simulator) drives the real code from outside: nothing in src/ or bench/ imports it.',
      severity: 'error',
      from: { path: '^(src|bench|infra)/' },
      to: { path: '^sim/' },
    },
    {
      name: 'no-circular',
      comment: 'No import cycle anywhere in src/: a cycle makes two modules one, and load order fragile.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'bus-is-below-replay-agent-fleet',
      comment:
        'src/bus/ is the wire (subjects, codec, RPC, event log, KV): everything above builds on it, ' +
        'so it imports nothing from replay/, agent/ or fleet/.',
      severity: 'error',
      from: { path: '^src/bus/' },
      to: { path: '^src/(replay|agent|fleet)/' },
    },
    {
      name: 'fleet-not-agent',
      comment:
        'The fleet controller places sandboxes on nodes; it talks to agents over NATS, never through ' +
        "the agent's code (what both need lives in bus/, domain/ or kata/).",
      severity: 'error',
      from: { path: '^src/fleet/' },
      to: { path: '^src/agent/' },
    },
    {
      name: 'machines-are-pure',
      comment:
        'src/machines/ holds pure machine definitions: only xstate, src/domain/ and src/errors.ts (and ' +
        'each other). No node:*, @nats-io, pino or msgpackr: effects are bound with .provide() by the agent.',
      severity: 'error',
      from: { path: '^src/machines/' },
      to: { pathNot: ['^src/machines/', '^src/domain/', '^src/errors[.]ts$', '(^|/)node_modules/xstate/'] },
    },
    {
      name: 'kata-only-errors',
      comment:
        "src/kata/ is Kata's rules (config, OCI, sizing, ids): it imports only src/errors.ts, node " +
        'builtins and smol-toml (the TOML parser), so it can be read and tested on its own.',
      severity: 'error',
      from: { path: '^src/kata/' },
      to: {
        dependencyTypesNot: ['core'],
        pathNot: ['^src/kata/', '^src/errors[.]ts$', '(^|/)node_modules/smol-toml/'],
      },
    },
    {
      name: 'workers-not-agent-or-machines',
      comment:
        'Workers are separate processes that do side effects on command; they never reach into the ' +
        'agent or the machines (the shared contract is src/domain/ops.ts and the wire in src/bus/).',
      severity: 'error',
      from: { path: '^src/workers/' },
      to: { path: '^src/(agent|machines)/' },
    },
    {
      name: 'domain-only-errors',
      comment:
        'src/domain/ is the shared vocabulary (types and pure helpers): it imports only src/errors.ts, and the ' +
        'ContainerType it re-exports from the Kata rules that define it (a type, nothing loaded at run time).',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: ['^src/domain/', '^src/errors[.]ts$', '^src/kata/container-type[.]ts$'] },
    },
    {
      name: 'domain-kata-types-only',
      comment: 'What src/domain/ takes from src/kata/ is types only.',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { path: '^src/kata/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'shim-is-a-thin-client',
      comment:
        "src/shim/ is containerd's runtime v2 shim: a client of the agent over NATS. It uses the wire (bus/), the " +
        'shared vocabulary (domain/), the error catalogue and the logger; never the agent, the workers, the ' +
        'machines, replay or the fleet (all state is the agent’s).',
      severity: 'error',
      from: { path: '^src/shim/' },
      to: { path: '^src/(agent|workers|machines|replay|fleet|cli)/' },
    },
    {
      name: 'only-cli-uses-the-shim',
      comment: 'The shim is an entry point of its own; only the CLI (`corral shim install`) reaches into it.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(shim|cli)/' },
      to: { path: '^src/shim/' },
    },
    {
      name: 'src-not-tests-or-bench',
      comment: 'Production code never imports test or benchmark code (the other way round is fine).',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'not-to-unresolvable',
      comment:
        'Every import resolves: an import the cruiser cannot resolve is one no rule above can check ' +
        '(and a typo tsc would also refuse).',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Follow only our own code; node_modules are leaves (their paths are still matched by the rules).
    doNotFollow: { path: 'node_modules' },
    // Count `import type` too: with verbatimModuleSyntax tsc would erase them, but they are still a
    // dependency between layers.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
