// The typed face of @std/assert, reached through the npm repackaging deno-std (PLATFORM.md).
// @ts-types="./assert.d.ts"
export * from "npm:deno-std@1.4.0/assert/mod.js";
