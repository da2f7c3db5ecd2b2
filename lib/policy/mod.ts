/**
 * Access policy for listing and importing devices.
 *
 * @module
 */

export * from "./policy.ts";
