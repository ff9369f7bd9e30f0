/** The fleet: node registry, liveness, placement, controller, drain. docs/api.md ("Fleet") is the contract. */
export * from './types.ts';
export * from './capacity.ts';
export * from './state.ts';
export * from './host.ts';
export * from './registry.ts';
export * from './agent-registration.ts';
export * from './view.ts';
export * from './liveness.ts';
export * from './placement.ts';
export * from './request.ts';
export * from './node-create.ts';
export * from './assume-cache.ts';
export * from './controller.ts';
export * from './drain.ts';
