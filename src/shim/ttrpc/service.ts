/**
 * What a ttrpc server dispatches to, and the typed binding from a protobuf-es service descriptor.
 *
 * A {@link ServiceHandlers} is one service's handler table: `service` is the full proto name
 * (`containerd.task.v2.Task`), `methods` is keyed by the proto method name (`Create`), which is what a
 * ttrpc Request carries. A {@link UnaryHandler} gets the request payload bytes and answers the response
 * payload bytes; it reports failure by throwing (see status.ts for how errors become status codes).
 *
 * {@link bindService} builds that table from a generated `GenService` and an implementation object keyed
 * by the descriptor's method keys, which protobuf-es makes lowerCamelCase (`create`, `closeIO`, `resizePty`).
 * Each implementation method takes the decoded input message and the {@link CallContext}, and returns
 * (a Promise of) the output message's init shape. A method the implementation leaves out is left out of
 * the table, so the server answers it UNIMPLEMENTED ("method X"). A payload that does not decode as the
 * input message is InvalidArgument.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { err } from '../../errors.ts';

/** Request metadata: each key with its values in arrival order. */
export type Metadata = Readonly<Record<string, readonly string[]>>;

export interface CallContext {
  readonly service: string;
  readonly method: string;
  readonly metadata: Metadata;
  /**
   * Aborted when the call's deadline (Request.timeout_nano) passes, with a Timeout CorralError as reason
   * (the call has then been answered DEADLINE_EXCEEDED), or when the connection closes or the server stops
   * (reason: Cancelled). Whatever the handler returns after that is dropped.
   */
  readonly signal: AbortSignal;
  /** Epoch milliseconds of the deadline; undefined when the caller set none. */
  readonly deadline: number | undefined;
}

export type UnaryHandler = (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array>;

export interface ServiceHandlers {
  readonly service: string;
  readonly methods: Readonly<Record<string, UnaryHandler>>;
}

type Impl<M extends DescMethod> = M extends { input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? (input: MessageShape<I>, ctx: CallContext) => MessageInitShape<O> | Promise<MessageInitShape<O>>
  : never;

/** An implementation of a generated service: any subset of its methods, by the descriptor's keys. */
export type ServiceImpl<S extends GenServiceMethods> = {
  readonly [K in keyof S]?: Impl<GenService<S>['method'][K]>;
};

/** One method's implementation as a byte-level handler (decode, call, encode). */
export function bindMethod<I extends DescMessage, O extends DescMessage>(
  method: { readonly name: string; readonly input: I; readonly output: O },
  fn: (input: MessageShape<I>, ctx: CallContext) => MessageInitShape<O> | Promise<MessageInitShape<O>>,
): UnaryHandler {
  return async (payload, ctx) => {
    let input: MessageShape<I>;
    try {
      input = fromBinary(method.input, payload);
    } catch (e) {
      throw err.invalid(`${method.name}: cannot decode ${method.input.typeName}: ${(e as Error).message}`, e);
    }
    return toBinary(method.output, create(method.output, await fn(input, ctx)));
  };
}

/** The handler table of `desc` served by `impl`. @throws InvalidArgument for a streaming method in `impl`. */
export function bindService<S extends GenServiceMethods>(desc: GenService<S>, impl: ServiceImpl<S>): ServiceHandlers {
  const methods: Record<string, UnaryHandler> = {};
  const fns: Partial<Record<string, Impl<DescMethod>>> = impl;
  for (const m of desc.methods) {
    const fn = fns[m.localName];
    if (fn === undefined) continue;
    if (m.methodKind !== 'unary') throw err.invalid(`${desc.typeName}/${m.name}: only unary methods are served`);
    methods[m.name] = bindMethod(m, fn);
  }
  return { service: desc.typeName, methods };
}
