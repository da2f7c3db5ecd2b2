// Helpers for the systemd tests: the real gateway process started with a chosen environment
// (and optionally behind a wrapper such as systemd-socket-activate), and a notify socket that
// plays the service manager's side of sd_notify(3).
import { MAIN, type MainProcess, spawnMain } from "../e2e/_gateway.ts";

export { MAIN };

/** A running gateway process and its stderr lines. */
export type ServiceProcess = MainProcess;

/** Starts `[...wrapper, deno, run, -A, main.ts, ...args]` with `env` added to the environment. */
export function spawnService(
  args: string[],
  options: { env?: Record<string, string>; wrapper?: string[] } = {},
): ServiceProcess {
  return spawnMain(args, {
    env: options.env ?? {},
    waitMs: 20000,
    ...(options.wrapper !== undefined ? { wrapper: options.wrapper } : {}),
  });
}

/** One received notification: its fields, in order, and when it came. */
export interface Notification {
  fields: [string, string][];
  text: string;
  at: number;
}

/** A unix datagram socket standing in for systemd's notify socket. */
export class NotifySocket {
  readonly path: string;
  readonly received: Notification[] = [];
  #conn: Deno.DatagramConn;
  #waiters: { test(n: Notification): boolean; resolve(n: Notification): void }[] = [];
  #loop: Promise<void>;

  constructor(path: string) {
    this.path = path;
    const conn = Deno.listenDatagram({ transport: "unixpacket", path });
    this.#conn = conn;
    this.#loop = (async () => {
      try {
        for await (const [data] of conn) {
          const text = new TextDecoder().decode(data);
          const fields = text.split("\n").filter((l) => l !== "").map((l) => {
            const i = l.indexOf("=");
            return [l.slice(0, i), l.slice(i + 1)] as [string, string];
          });
          const n = { fields, text, at: performance.now() };
          this.received.push(n);
          for (const w of [...this.#waiters]) {
            if (w.test(n)) {
              this.#waiters.splice(this.#waiters.indexOf(w), 1);
              w.resolve(n);
            }
          }
        }
      } catch {
        // Closed.
      }
    })();
  }

  /** The first notification (already received or still to come) that `test` accepts. */
  next(test: (n: Notification) => boolean, ms = 20000): Promise<Notification> {
    const seen = this.received.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const entry = {
        test,
        resolve: (n: Notification) => {
          clearTimeout(timer);
          resolve(n);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(entry), 1);
        reject(
          new Error(
            `No matching notification within ${ms} ms; received:\n${
              this.received.map((r) => JSON.stringify(r.text)).join("\n")
            }`,
          ),
        );
      }, ms);
      this.#waiters.push(entry);
    });
  }

  async close(): Promise<void> {
    this.#conn.close();
    await this.#loop;
  }
}

/** The value of `key` in a notification, if present. */
export function field(n: Notification, key: string): string | undefined {
  return n.fields.find(([k]) => k === key)?.[1];
}

/** Whether `command` can be run (found on PATH). */
export async function hasCommand(command: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${command}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}
