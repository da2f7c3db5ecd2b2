/**
 * The HTTP listener of the metrics: `GET /metrics` answers the exposition (Prometheus text
 * format 0.0.4, `exposition.ts`); any other path is 404 and any other method on `/metrics` is
 * 405. It reads nothing of a request but its method and path: no query parameters, no
 * headers, no body. It runs on `Deno.serve` beside the USB/IP listeners, in the same event
 * loop; its errors are logged and never reach a session.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import { errorMessage } from "../util/error_message.ts";
import { CONTENT_TYPE } from "./exposition.ts";

const log = getLogger(["usbipgw", "metrics"]);

/** The path the metrics are served at, as Prometheus scrapes by default. */
export const METRICS_PATH = "/metrics";

/**
 * Whether `hostname` is a loopback address (127.0.0.0/8, `::1`) or `localhost`: only local
 * processes can reach a listener bound to it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { isLoopbackHost } from "./metrics_listener.ts";
 * assertEquals(["127.0.0.1", "::1", "0.0.0.0", "192.0.2.1"].map(isLoopbackHost),
 *   [true, true, false, false]);
 * ```
 */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/**
 * The answer to one request: the exposition for `GET /metrics`, 404 for another path, 405
 * (with `Allow: GET`) for another method. `render` is called only for a GET of the path.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { metricsResponse } from "./metrics_listener.ts";
 * const render = () => "up 1\n";
 * const get = (path: string, method = "GET") =>
 *   metricsResponse(new Request(`http://127.0.0.1${path}`, { method }), render).status;
 * assertEquals([get("/metrics"), get("/metrics?x=1"), get("/"), get("/metrics", "POST")],
 *   [200, 200, 404, 405]);
 * ```
 */
export function metricsResponse(request: Request, render: () => string): Response {
  if (new URL(request.url).pathname !== METRICS_PATH) {
    return new Response("Not Found: the metrics are at /metrics\n", { status: 404 });
  }
  if (request.method !== "GET") {
    return new Response("Method Not Allowed: GET only\n", {
      status: 405,
      headers: { allow: "GET" },
    });
  }
  return new Response(render(), { headers: { "content-type": CONTENT_TYPE } });
}

/** Where a {@linkcode MetricsListener} listens. */
export interface MetricsListenerOptions {
  /** The address to bind: a loopback one unless the operator chose otherwise. */
  hostname: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** Makes the exposition, at every scrape. */
  render: () => string;
}

/** An HTTP listener that serves {@linkcode METRICS_PATH}. */
export class MetricsListener {
  #server: Deno.HttpServer<Deno.NetAddr>;
  /** The bound address (the port picked when 0 was asked). */
  readonly addr: Deno.NetAddr;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>) {
    this.#server = server;
    this.addr = server.addr;
  }

  /**
   * Binds and serves; throws as `Deno.serve` does when the address cannot be bound (in use,
   * not an address of this machine). A request that fails is answered 500 and logged.
   */
  static listen(options: MetricsListenerOptions): MetricsListener {
    const server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      // Deno.serve would print its own "Listening on" line to the console.
      onListen: () => {},
      onError: (e) => {
        log.error("Cannot answer a metrics request: {error}", { error: errorMessage(e) });
        return new Response("Internal Server Error\n", { status: 500 });
      },
    }, (request) => metricsResponse(request, options.render));
    return new MetricsListener(server);
  }

  /** The URL scrapers use: `http://127.0.0.1:9464/metrics`. */
  get url(): string {
    const { hostname, port } = this.addr;
    return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}${METRICS_PATH}`;
  }

  /** Stops listening; resolves when requests in progress are answered. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }
}
