// Types for the parts of @std/streams we use (deno-std on npm ships JavaScript only).

/** Splits a text stream into lines. */
export declare class TextLineStream extends TransformStream<string, string> {
  constructor(options?: { allowCR?: boolean });
}
export declare function toText(stream: ReadableStream<Uint8Array>): Promise<string>;
export declare function toBytes(stream: ReadableStream<Uint8Array>): Promise<Uint8Array>;
