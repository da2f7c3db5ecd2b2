/**
 * The USB/IP wire protocol: constants, pure encoders and decoders for every message, and a
 * frame reader over a `ReadableStream`. No I/O beyond reading the stream it is given.
 *
 * @module
 */

export * from "./constants.ts";
export * from "./protocol_error.ts";
export * from "./op_messages.ts";
export * from "./urb_messages.ts";
export * from "./frame_reader.ts";
export * from "./buffer_pool.ts";
