/**
 * The shape a type takes once written as JSON.
 *
 * Grafana's schema declares some fields as TypeScript string enums (ThresholdsMode,
 * FieldColorModeId, MappingType, ...). A dashboard file holds their values as plain
 * strings ("absolute"), which TypeScript would refuse for an enum type even when the
 * value is right. JsonOf<T> replaces every string enum by the union of its values and
 * keeps everything else as the schema says: required fields, numbers, numeric enums,
 * and the excess-property check of object literals (a misspelt field still fails).
 */
export type JsonOf<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<JsonOf<U>>
      : T extends object
        ? { [K in keyof T]: JsonOf<T[K]> }
        : T;
