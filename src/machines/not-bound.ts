import { fromPromise } from 'xstate';

/** The placeholder of a named effect: the agent (or a test) binds the real one with `.provide()`. */
export const notBound = <O, I>(name: string) =>
  fromPromise<O, I>(async () => {
    throw new Error(`effect ${name} is not bound`);
  });
