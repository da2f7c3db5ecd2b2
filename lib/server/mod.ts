/**
 * The session and server core: ties connections from any transport to exported devices.
 *
 * @module
 */

export * from "./exported_device.ts";
export * from "./session.ts";
export * from "./session_host.ts";
export { describeAttachRequest } from "./wire_text.ts";
export * from "./server.ts";
export * from "./session_limits.ts";
