/**
 * libc through FFI, shared by the modules that need a few of its calls (usbfs, ptys, raw
 * sockets, socket options): each opens its own symbol table on first use, so that FFI
 * permission is needed only where it is used, and reads errno the same way.
 *
 * @module
 */

/** `int *__errno_location(void)`: where the calling thread's errno lives. */
export const ERRNO_LOCATION = {
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * Returns a function that opens libc with `symbols` on its first call and then gives the
 * symbols.
 *
 * @example
 * ```ts
 * import { lazyLibc } from "./libc.ts";
 * const lib = lazyLibc({ getpid: { parameters: [], result: "i32" } });
 * console.assert(lib().getpid() === Deno.pid);
 * ```
 */
export function lazyLibc<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): () => Deno.DynamicLibrary<S>["symbols"] {
  let lib: Deno.DynamicLibrary<S> | undefined;
  return () => (lib ??= Deno.dlopen("libc.so.6", symbols)).symbols;
}

/**
 * The errno at `location` (what `__errno_location()` returned); read it right after the
 * synchronous call that failed, on the same thread.
 */
export function errnoAt(location: Deno.PointerValue): number {
  return location === null ? 0 : new Deno.UnsafePointerView(location).getInt32(0);
}
