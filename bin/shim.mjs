#!/usr/bin/env node
// containerd-shim-corral-v2's program (the launcher `corral shim install` writes execs it): the compiled
// dist/bundle/shim-main.js when dist/ is current, else src/shim/main.ts through tsx, as bin/corral.mjs decides for
// `corral`. Prints nothing of its own: containerd reads the shim's start output as its address.
import { entry } from './dist.mjs';

const e = entry(undefined, undefined, 'shim/main');
if (!e.compiled) (await import('tsx/esm/api')).register();
await import(e.main);
