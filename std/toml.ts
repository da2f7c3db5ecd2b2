// The typed face of @std/toml, through deno-std on npm (PLATFORM.md).
// @ts-types="./toml.d.ts"
export * from "npm:deno-std@1.4.0/toml/mod.js";
