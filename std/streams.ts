// The typed face of @std/streams, through deno-std on npm (PLATFORM.md).
// @ts-types="./streams.d.ts"
export * from "npm:deno-std@1.4.0/streams/mod.js";
