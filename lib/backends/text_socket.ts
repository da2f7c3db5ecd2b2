/**
 * A text input back-end: a unix stream socket whose every connection's bytes are decoded as
 * UTF-8 and handed, in arrival order, to a consumer such as a keyboard's `type()`. Writing
 * `echo hello | socat - UNIX-CONNECT:PATH` types "hello" and Enter.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { UnixListener, type UnixListenOptions } from "../transport/unix.ts";
import { backendLogger } from "./_backend_log.ts";
import { listenFailed } from "./backend_error.ts";

/** Receives text; the next text is delivered only after the returned promise settles. */
export type TextConsumer = (text: string) => Promise<unknown> | void;

/** A running text socket. */
export interface TextSocket {
  readonly path: string;
  /** Stops accepting, closes open connections and removes the socket file. */
  close(): Promise<void>;
}

/** Where and how to open a text socket. */
export interface TextSocketOptions extends UnixListenOptions {
  /**
   * The device the socket feeds, e.g. `keyboard 1-2`: every log line of the socket then
   * starts with it (and carries it as the `label` property), and so does an open error.
   */
  label?: string;
}

/**
 * Opens a text socket at `options.path` feeding `consume`.
 *
 * @throws {BackendOpenError} When the socket cannot be made (its folder is missing, read-only
 * or not writable, a server accepts there already, ...); the message starts with the label
 * when given, then names the path and the reason.
 */
export async function openTextSocket(
  options: TextSocketOptions,
  consume: TextConsumer,
): Promise<TextSocket> {
  const { label, ...listen } = options;
  const log = backendLogger(label);
  let listener: UnixListener;
  try {
    listener = await UnixListener.listen(listen);
  } catch (e) {
    throw listenFailed("text socket", `on ${options.path}`, e, label);
  }
  const open = new Set<() => void>();
  let chain: Promise<unknown> = Promise.resolve();
  const deliver = (text: string) => {
    chain = chain.then(() => consume(text)).catch((e) => {
      log.warn("Text input on {path} was not fully delivered: {error}", {
        path: options.path,
        error: errorMessage(e),
      });
    });
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const close = () => conn.close();
      open.add(close);
      (async () => {
        const decoder = new TextDecoder();
        try {
          for await (const chunk of conn.readable) {
            const text = decoder.decode(chunk, { stream: true });
            if (text !== "") deliver(text);
          }
          const tail = decoder.decode();
          if (tail !== "") deliver(tail);
        } catch {
          // The writer went away mid-stream; what arrived was delivered.
        } finally {
          open.delete(close);
          conn.close();
        }
      })();
    }
  })();
  log.info("Text input socket on {path}", { path: options.path });
  return {
    path: options.path,
    async close() {
      listener.close();
      for (const close of open) close();
      await accepting;
    },
  };
}
