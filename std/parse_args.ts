// The typed face of @std/cli/parse-args, through deno-std on npm (PLATFORM.md: its cli/mod.js
// does not load, so the module is mapped directly).
// @ts-types="./parse_args.d.ts"
export * from "npm:deno-std@1.4.0/cli/parse_args.js";
