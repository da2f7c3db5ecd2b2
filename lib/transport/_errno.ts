/**
 * What the transport's errors share: the errno name a system error carries, the wording
 * `words (ECODE)`, and {@linkcode ErrnoFailure}, the base of `ListenError` and
 * `ConnectError` (a failure for programs, the errno name, the reason in words and a hint).
 * Private to `lib/transport/`, but for {@linkcode ErrnoFailure}, which `mod.ts` exports as the
 * base whose fields those errors share.
 *
 * @module
 */

/** The errno name a Deno or `node:` error carries in `code` (`EADDRINUSE`), if any. */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** `words`, followed by the errno name in parentheses when there is one. */
export function withCode(words: string, code: string | undefined): string {
  return code === undefined ? words : `${words} (${code})`;
}

/** Options of an {@linkcode ErrnoFailure}. */
export interface ErrnoFailureOptions {
  /** What to check, e.g. `is the gateway running?`; appended after `; `. */
  hint?: string;
  /** The errno name behind it (`ECONNREFUSED`), when there is one. */
  code?: string;
  /** The error the system gave. */
  cause?: unknown;
}

/**
 * A socket call that failed: `LEAD: DETAIL` and, where one helps, `; HINT`, where the lead
 * names the call and its place (`Cannot listen on 127.0.0.1:3240`).
 */
export abstract class ErrnoFailure<F extends string> extends Error {
  /** What went wrong, for programs. */
  readonly failure: F;
  /** The errno name (`EADDRINUSE`, `ENOENT`, ...), when the system gave one. */
  readonly code: string | undefined;
  /** The reason alone, without the place or the hint: `the address is in use (EADDRINUSE)`. */
  readonly detail: string;

  /** Builds the error; the message is made from the lead, the detail and the hint. */
  constructor(lead: string, failure: F, detail: string, options: ErrnoFailureOptions) {
    super(
      `${lead}: ${detail}${options.hint ? `; ${options.hint}` : ""}`,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.failure = failure;
    this.code = options.code;
    this.detail = detail;
  }
}

/**
 * A maker of the errors for `error`, which the system gave with the errno name `code`: each
 * call words one failure as `words (CODE)`, with its hint, the code and `error` as the cause,
 * and builds it with `make`.
 */
export function failuresOf<F extends string, E>(
  error: unknown,
  code: string | undefined,
  make: (failure: F, detail: string, options: ErrnoFailureOptions) => E,
): (failure: F, words: string, hint?: string) => E {
  return (failure, words, hint) =>
    make(failure, withCode(words, code), {
      ...(hint === undefined ? {} : { hint }),
      ...(code === undefined ? {} : { code }),
      cause: error,
    });
}
