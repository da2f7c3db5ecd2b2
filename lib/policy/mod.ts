/**
 * Access policy for listing and importing devices.
 *
 * @module
 */

export * from "./policy.ts";
export * from "./seat.ts";
