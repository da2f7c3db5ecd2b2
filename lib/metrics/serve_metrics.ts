/**
 * `serve --metrics HOST:PORT`: counts a server's traffic ({@linkcode ServerMetrics}) and
 * serves it over HTTP ({@linkcode MetricsListener}). A non-loopback address is the
 * operator's explicit choice and is logged as a warning: the listener has no
 * authentication.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import { errorMessage } from "../util/error_message.ts";
import type { UsbipServer } from "../server/server.ts";
import { isLoopbackHost, MetricsListener } from "./metrics_listener.ts";
import { ServerMetrics } from "./server_metrics.ts";

const log = getLogger(["usbipgw", "metrics"]);

/** Metrics being served: where, and how to stop. */
export interface ServingMetrics {
  /** The URL to scrape, with the bound port: `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  /** The counts, also readable without HTTP. */
  readonly metrics: ServerMetrics;
  /** Stops counting and listening. */
  close(): Promise<void>;
}

/**
 * Counts `server`'s traffic from now on and serves it at `http://HOST:PORT/metrics`; throws
 * `Error` naming the address when it cannot be bound.
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { UsbipServer } from "../server/server.ts";
 * import { serveMetrics } from "./serve_metrics.ts";
 * const served = serveMetrics(new UsbipServer(), { hostname: "127.0.0.1", port: 0 });
 * const text = await (await fetch(served.url)).text();
 * assertStringIncludes(text, "# TYPE usbipgw_urbs_total counter");
 * await served.close();
 * ```
 */
export function serveMetrics(
  server: UsbipServer,
  address: { hostname: string; port: number },
): ServingMetrics {
  const metrics = new ServerMetrics(server);
  let listener: MetricsListener;
  try {
    listener = MetricsListener.listen({ ...address, render: () => metrics.render() });
  } catch (e) {
    metrics.close();
    const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
    throw new Error(`Cannot serve metrics on ${host}:${address.port}: ${errorMessage(e)}`);
  }
  const url = listener.url;
  if (!isLoopbackHost(address.hostname)) {
    log.warn(
      "Metrics on {url} can be read by anyone who reaches this address, without authentication: they name bus ids, transports and counts; bind a loopback address or firewall the port",
      { url },
    );
  }
  log.info("Serving metrics on {url}", { url });
  return {
    url,
    metrics,
    async close() {
      metrics.close();
      await listener.close();
    },
  };
}
