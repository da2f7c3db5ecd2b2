// Starts the real gateway process (`deno run -A main.ts serve ...`) for end-to-end tests and
// collects its log lines.
import { TextLineStream } from "@std/streams";

export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running process of `main.ts` and its stderr lines. */
export interface MainProcess {
  process: Deno.ChildProcess;
  /** Every stderr line so far. */
  lines: string[];
  /**
   * Resolves with the first log line matching `pattern`; rejects after `ms`, or at once when the
   * process has exited without logging it.
   */
  waitFor(pattern: RegExp, ms?: number): Promise<string>;
  /** Sends a signal and waits for the exit status and the end of stderr. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** A running gateway process. */
export interface GatewayProcess extends MainProcess {
  /** The TCP port of the first `--tcp` listener (port 0 is resolved from the log). */
  port: number;
}

/**
 * Starts `[...wrapper, deno, run, -A, main.ts, ...args]` (with `env` added to the environment
 * when given) and collects its stderr lines.
 */
export function spawnMain(
  args: string[],
  options: { env?: Record<string, string>; wrapper?: string[]; waitMs?: number } = {},
): MainProcess {
  const argv = [...(options.wrapper ?? []), Deno.execPath(), "run", "-A", MAIN, ...args];
  const process = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    ...(options.env !== undefined ? { env: options.env } : {}),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const watchers: { pattern: RegExp; resolve(line: string): void; reject(e: Error): void }[] = [];
  /** How the process ended, once its stderr has ended and it has exited. */
  let ended: string | undefined;
  const pump = (async () => {
    const stream = process.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(
      new TextLineStream(),
    );
    for await (const line of stream) {
      lines.push(line);
      for (const w of [...watchers]) {
        if (w.pattern.test(line)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  })();
  const notLogged = (pattern: RegExp) =>
    new Error(`The gateway ${ended} before it logged ${pattern}; its log:\n${lines.join("\n")}`);
  // A process that has exited logs nothing more: whoever waits for a line fails at once.
  pump.then(() => process.status).then((status) => {
    ended = status.signal !== null
      ? `was killed by ${status.signal}`
      : `exited with code ${status.code}`;
    for (const w of watchers.splice(0)) w.reject(notLogged(w.pattern));
  }).catch(() => {});
  const waitFor = (pattern: RegExp, ms = options.waitMs ?? 15000) => {
    const seen = lines.find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    if (ended !== undefined) return Promise.reject(notLogged(pattern));
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        watchers.splice(watchers.indexOf(entry), 1);
        reject(
          new Error(
            `The gateway did not log ${pattern} within ${ms} ms; its log:\n${lines.join("\n")}`,
          ),
        );
      }, ms);
      const entry = {
        pattern,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      watchers.push(entry);
    });
  };
  return {
    process,
    lines,
    waitFor,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        process.kill(signal);
      } catch {
        // Already exited.
      }
      const status = await process.status;
      await pump;
      return status;
    },
  };
}

/**
 * Runs `main.ts serve` with `args` and waits until it listens; a gateway that exits instead
 * fails the start at once, with its log.
 */
export async function startGateway(args: string[]): Promise<GatewayProcess> {
  const main = spawnMain(["serve", ...args]);
  try {
    const ready = await main.waitFor(/usbipgw serving/);
    return { ...main, port: Number(/tcp [^ ,]*:(\d+)/.exec(ready)?.[1] ?? 0) };
  } catch (e) {
    await main.stop("SIGKILL");
    throw e;
  }
}

/** Runs `main.ts` with `args` to completion and returns its status and output. */
export async function runMain(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A fresh temporary directory for sockets and files, removed by the returned function. */
export async function tempDir(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "usbipgw-test-" });
  return { path, remove: () => Deno.remove(path, { recursive: true }) };
}

/**
 * Runs `main.ts serve` with a TLS listener on a free port of 127.0.0.1 (`tlsFlags`, from
 * tests/transport/_certs.ts `tlsServeFlags`) and `args`; resolves with the process and the
 * port once it serves.
 */
export async function startTlsGateway(
  tlsFlags: string[],
  args: string[],
): Promise<{ gw: MainProcess; port: number }> {
  const gw = spawnMain(["serve", ...tlsFlags, ...args]);
  try {
    const ready = await gw.waitFor(/usbipgw serving/);
    const port = Number(/tls 127\.0\.0\.1:(\d+)/.exec(ready)?.[1]);
    if (!(port > 0)) throw new Error(`No TLS port in "${ready}"`);
    return { gw, port };
  } catch (e) {
    await gw.stop("SIGKILL");
    throw e;
  }
}
