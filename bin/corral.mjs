#!/usr/bin/env node
// The `corral` command: the compiled bundle in dist/bundle/ when it is current (npm run build; bootstrap builds it),
// else the TypeScript sources through tsx (bin/dist.mjs decides). CORRAL_RUNNING_FROM tells the process which.
import { entry } from './dist.mjs';

const e = entry();
process.env.CORRAL_RUNNING_FROM = e.compiled ? 'dist' : `src (${e.why})`;
if (!e.compiled) (await import('tsx/esm/api')).register();
await import(e.main);
