/** What the character back-end tests share: waiting for a condition and reading n bytes. */

import { assert } from "@std/assert";
import type { CharBackend } from "../../../lib/backends/char/mod.ts";

/** A signal that never aborts. */
export const NEVER = new AbortController().signal;
export const enc = new TextEncoder();
export const dec = new TextDecoder();

/** Waits until `cond()` holds, polling every 5 ms, for at most `ms`. */
export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reads from the back-end until `n` bytes arrived. */
export async function readN(b: CharBackend, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const chunk = await b.read(n - got, NEVER);
    assert(chunk !== null);
    out.set(chunk, got);
    got += chunk.length;
  }
  return out;
}

/** Reads from a socket until `n` bytes arrived. */
export async function readConn(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("Unexpected end of stream");
    got += r;
  }
  return out;
}
