// Types for @std/cli/parse-args (deno-std on npm ships JavaScript only), after jsr:@std/cli 1.x.

/** What parseArgs returns: flags by name plus the positional arguments in `_`. */
export interface Args {
  _: (string | number)[];
  "--"?: string[];
  [flag: string]: unknown;
}

/** The options of parseArgs. */
export interface ParseOptions {
  "--"?: boolean;
  alias?: Record<string, string | readonly string[]>;
  boolean?: readonly string[] | boolean;
  default?: Record<string, unknown>;
  stopEarly?: boolean;
  string?: readonly string[];
  collect?: readonly string[];
  negatable?: readonly string[];
  unknown?: (arg: string, key?: string, value?: unknown) => unknown;
}

export declare function parseArgs(args: readonly string[], options?: ParseOptions): Args;
