/**
 * The error for a command line or configuration the user must fix; `main.ts` prints its
 * message and exits with status 2.
 *
 * @module
 */

/** A mistake in the command line or the configuration file. */
export class UsageError extends Error {
  /** Builds the error from a message that says what is wrong and what is accepted. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}
