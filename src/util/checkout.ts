/**
 * Where this checkout is, for the files Corral runs beside its code (bin/, .corral/, package.json). The one
 * module that finds paths from its own location: it lies two levels below the checkout in src/ (src/util/), in
 * tsc's output (dist/util/) and in the bundle the processes run (dist/bundle/, where every module is part of
 * a chunk: infra/scripts/build.mjs), so `../..` is the checkout in all three.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHECKOUT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

/** A path inside the checkout. */
export const inCheckout = (...parts: string[]): string => join(CHECKOUT, ...parts);
