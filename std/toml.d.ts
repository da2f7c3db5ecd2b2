// Types for @std/toml's parse (deno-std on npm ships JavaScript only).

/** Parses TOML text; throws SyntaxError naming the line on malformed input. */
export declare function parse(tomlString: string): Record<string, unknown>;
