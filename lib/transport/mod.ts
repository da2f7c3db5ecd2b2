/**
 * Transports: TCP (IPv4/IPv6, TCP_NODELAY, keep-alive), TLS with client certificates,
 * unix-domain sockets with SO_PEERCRED, and an in-memory pair for tests. They know nothing of
 * USB.
 *
 * @module
 */

export * from "./connection.ts";
export * from "./tcp.ts";
export * from "./tls.ts";
export * from "./unix.ts";
export * from "./memory.ts";
export * from "./reply_writer.ts";
export * from "./accept_queue.ts";
export * from "./listen_error.ts";
export * from "./connect_error.ts";
