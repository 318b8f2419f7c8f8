/**
 * The TypeScript type of the values a JSON schema (written `as const`)
 * accepts, for the keywords the protocol schemas use: type (one or a list),
 * properties with required, items, additionalProperties. Other keywords
 * (pattern, maxLength...) narrow values, not types, and are ignored.
 * Objects with properties are closed, as the hand-written interfaces were.
 */
export type FromSchema<S> = S extends { readonly type: infer T } ? OfType<S, T extends readonly (infer U)[] ? U : T> : unknown;

// T is a naked type parameter, so a list of types distributes into a union.
type OfType<S, T> = T extends 'string'
  ? string
  : T extends 'integer' | 'number'
    ? number
    : T extends 'boolean'
      ? boolean
      : T extends 'null'
        ? null
        : T extends 'array'
          ? S extends { readonly items: infer I }
            ? FromSchema<I>[]
            : unknown[]
          : T extends 'object'
            ? ObjectOf<S>
            : never;

type ObjectOf<S> = S extends { readonly properties: infer P }
  ? Flatten<
      { -readonly [K in keyof P & RequiredOf<S>]: FromSchema<P[K]> } & {
        -readonly [K in Exclude<keyof P, RequiredOf<S>>]?: FromSchema<P[K]>;
      }
    >
  : S extends { readonly additionalProperties: infer A }
    ? Record<string, FromSchema<A>>
    : Record<string, unknown>;

type RequiredOf<S> = S extends { readonly required: readonly (infer R)[] } ? R : never;

type Flatten<T> = { [K in keyof T]: T[K] } & {};
