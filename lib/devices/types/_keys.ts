/**
 * What the device types share when they read their `key=value` options: a reader that checks
 * one key against its {@linkcode KeySpec} and stops the parse step at the first bad value with
 * a `ParseError` naming the key. Private to `lib/devices/types/`.
 *
 * @module
 */

import type { KeySpec, ParseResult } from "../device_type.ts";

/** The longest text a USB string descriptor holds: (255 - 2) / 2 UTF-16 code units. */
export const MAX_USB_STRING = 126;

/** The `serial` key of the types whose serial number string is optional, without a default. */
export const SERIAL_KEY: KeySpec = { kind: "text", help: "serial number string" };

/**
 * `values` without the entries that are `undefined`: the optional keys of a type's options
 * (`exactOptionalPropertyTypes` tells an absent key from one set to `undefined`).
 */
export function definedOnly<T extends Record<string, unknown>>(
  values: T,
): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

/** Thrown by {@linkcode KeyReader} and turned into a `ParseError` by `parseWith`. */
class _BadKey extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
  }
}

/** Reads the options of one spec of one device type; each method checks one key. */
export class KeyReader {
  readonly #type: string;
  readonly #keys: Readonly<Record<string, KeySpec>>;
  readonly #options: Readonly<Record<string, string>>;

  constructor(
    type: string,
    keys: Readonly<Record<string, KeySpec>>,
    options: Readonly<Record<string, string>>,
  ) {
    this.#type = type;
    this.#keys = keys;
    this.#options = options;
  }

  /** Stops the parse step: `key` is wrong, and `message` says why and what is accepted. */
  fail(key: string, message: string): never {
    throw new _BadKey(key, message);
  }

  /** Stops the parse step with `Invalid KEY="VALUE" for TYPE: expected ...`. */
  invalid(key: string, expected: string): never {
    return this.fail(
      key,
      `Invalid ${key}="${this.#options[key] ?? ""}" for ${this.#type}: expected ${expected}`,
    );
  }

  /** The value as given, or `undefined` when the key is absent. */
  text(key: string): string | undefined {
    return this.#options[key];
  }

  /** One of `values`; the key's default when absent. */
  choice<T extends string>(key: string, values: readonly T[]): T {
    const v = this.#options[key] ?? this.#spec(key).default;
    if (v === undefined || !(values as readonly string[]).includes(v)) {
      return this.invalid(key, values.join(" or "));
    }
    return v as T;
  }

  /** A 16-bit number in hex (`0x1209` or `1209`); `undefined` when absent. */
  hex16(key: string): number | undefined {
    const v = this.#options[key];
    if (v === undefined) return undefined;
    if (!/^(0x)?[0-9a-f]{1,4}$/i.test(v)) return this.invalid(key, "a hex number 0..ffff");
    return parseInt(v.replace(/^0x/i, ""), 16);
  }

  /**
   * A yes/no key: alone or empty, `1`/`true`/`yes`, or `0`/`false`/`no`; its default (`1` or
   * `0`) when absent.
   */
  yesNo(key: string): boolean {
    const v = this.#options[key] ?? this.#spec(key).default ?? "0";
    const t = v.trim().toLowerCase();
    if (t === "" || t === "1" || t === "true" || t === "yes") return true;
    if (t === "0" || t === "false" || t === "no") return false;
    return this.invalid(key, `${key} alone, ${key}=1 or ${key}=0`);
  }

  /** A path resolved with `resolve`; `undefined` when absent. An empty path is refused. */
  path(key: string, resolve: (path: string) => string): string | undefined {
    const v = this.#options[key];
    if (v === undefined) return undefined;
    if (v === "") return this.invalid(key, "a path");
    return resolve(v);
  }

  /** A text that must fit a USB string descriptor; `undefined` when absent. */
  usbString(key: string): string | undefined {
    const v = this.#options[key];
    if (v !== undefined && v.length > MAX_USB_STRING) {
      return this.fail(
        key,
        `Invalid ${key} for ${this.#type}: it is ${v.length} characters long; a USB string holds at most ${MAX_USB_STRING}`,
      );
    }
    return v;
  }

  #spec(key: string): KeySpec {
    const spec = this.#keys[key];
    if (spec === undefined) throw new TypeError(`${this.#type} has no key "${key}"`);
    return spec;
  }
}

/**
 * Runs `read` over a {@linkcode KeyReader} of `options`: its result, or the first bad key as a
 * `ParseError`.
 */
export function parseWith<O>(
  type: string,
  keys: Readonly<Record<string, KeySpec>>,
  options: Readonly<Record<string, string>>,
  read: (r: KeyReader) => { options: O; busid?: string },
): ParseResult<O> {
  try {
    return { ok: true, ...read(new KeyReader(type, keys, options)) };
  } catch (e) {
    if (e instanceof _BadKey) return { ok: false, key: e.key, message: e.message };
    throw e;
  }
}
