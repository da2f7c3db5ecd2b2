/**
 * Who is at the console: the active user of a systemd-logind seat, read from the seat state
 * file logind keeps under /run/systemd/seats (sd-login(3), logind's `seat_save()`), watched
 * for seat switches.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";

const log = getLogger(["usbipgw", "policy"]);

/** How long a burst of file-system events is gathered before the seat file is read again. */
const DEBOUNCE_MS = 20;

/** The largest valid uid: `(uid_t)-1` means "no user" to the kernel. */
const MAX_UID = 0xffff_fffe;

/** The parts of a logind seat file a policy uses. */
export interface SeatState {
  /** `ACTIVE_UID`: the uid of the seat's active session; absent when nobody is active. */
  activeUid?: number;
  /** `ACTIVE`: the id of the seat's active session (e.g. `"2"` or `"c1"`). */
  activeSession?: string;
}

/**
 * Reads a logind seat file (`KEY=VALUE` lines). Blank lines, comments (`#`, `;`) and lines
 * without `=` are skipped; a value in matching quotes loses them; the last occurrence of a
 * key wins. An `ACTIVE_UID` that is not a decimal uid (0..4294967294) counts as absent.
 *
 * @example Reading what logind writes for a graphical session
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseSeatFile } from "./seat.ts";
 *
 * const text = "# This is private data. Do not parse.\nIS_SEAT0=1\nACTIVE=c1\n" +
 *   "ACTIVE_UID=1000\nSESSIONS=c1 3\nUIDS=1000 120\n";
 * assertEquals(parseSeatFile(text), { activeUid: 1000, activeSession: "c1" });
 * assertEquals(parseSeatFile("IS_SEAT0=1\n"), {});
 * ```
 */
export function parseSeatFile(text: string): SeatState {
  let active: string | undefined;
  let activeUid: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const value = _unquote(line.slice(eq + 1).trim());
    if (key === "ACTIVE") active = value;
    else if (key === "ACTIVE_UID") activeUid = value;
  }
  const state: SeatState = {};
  if (activeUid !== undefined && /^[0-9]{1,10}$/.test(activeUid)) {
    const uid = Number(activeUid);
    if (uid <= MAX_UID) state.activeUid = uid;
  }
  if (active !== undefined && active !== "") state.activeSession = active;
  return state;
}

function _unquote(value: string): string {
  if (value.length >= 2) {
    const q = value[0];
    if ((q === '"' || q === "'") && value[value.length - 1] === q) return value.slice(1, -1);
  }
  return value;
}

/** Where to find the seat and whom to assume when logind is absent. */
export interface SeatWatcherOptions {
  /** The folder of logind's seat files; `"/run/systemd/seats"` when absent. */
  seatDir?: string;
  /** The seat's name, a file in `seatDir`; `"seat0"` (the console) when absent. */
  seat?: string;
  /** The console user to assume when `seatDir` does not exist (no logind); none when absent. */
  fallbackUid?: number;
}

/** Called with the new console uid and the one before it (`undefined`: nobody). */
export type SeatChangeListener = (uid: number | undefined, previous: number | undefined) => void;

/**
 * Follows the active user of a logind seat. logind replaces the seat file by rename, so the
 * watcher watches the seat FOLDER and reads the file again after every burst of events
 * (gathered for 20 ms, so a switch is seen within a few tens of milliseconds).
 *
 * - A missing seat file in an existing folder means nobody is active.
 * - A seat file that cannot be read, or a watch that fails, also counts as nobody (fail
 *   closed), with a logged warning.
 * - If the folder does not exist at {@linkcode SeatWatcher.open} time, logind is taken to be
 *   absent: {@linkcode SeatWatcherOptions.fallbackUid} (or nobody) is the console user for the
 *   watcher's whole life, and a folder created later is ignored (restart to pick logind up).
 *
 * @example Following a seat switch
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { SeatWatcher } from "./seat.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/seat0`, "ACTIVE=c1\nACTIVE_UID=1000\n");
 * const seat = await SeatWatcher.open({ seatDir: dir });
 * assertEquals(seat.consoleUid, 1000);
 *
 * const changed = new Promise((resolve) => {
 *   seat.onChange((uid, previous) => resolve([uid, previous]));
 * });
 * // What logind does: write a temporary file, rename it over the seat file.
 * await Deno.writeTextFile(`${dir}/.#seat0new`, "ACTIVE=c2\nACTIVE_UID=1001\n");
 * await Deno.rename(`${dir}/.#seat0new`, `${dir}/seat0`);
 * assertEquals(await changed, [1001, 1000]);
 *
 * await seat.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SeatWatcher {
  /** `"logind"` when the seat folder is watched, `"fallback"` when it did not exist. */
  readonly source: "logind" | "fallback";
  /** The seat file's path. */
  readonly path: string;
  #state: SeatState;
  #watcher: Deno.FsWatcher | undefined;
  #pump: Promise<void> = Promise.resolve();
  #listeners = new Set<SeatChangeListener>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reading: Promise<void> | undefined;
  #dirty = false;
  #closed = false;

  private constructor(source: "logind" | "fallback", path: string, state: SeatState) {
    this.source = source;
    this.path = path;
    this.#state = state;
  }

  /**
   * Reads the seat's state and starts watching its folder (or settles on the fallback when
   * the folder does not exist).
   *
   * @throws {TypeError} When `seat` is not a plain file name or `fallbackUid` not a uid.
   * @throws {Deno.errors.NotADirectory} When `seatDir` exists but is not a folder.
   */
  static async open(options: SeatWatcherOptions = {}): Promise<SeatWatcher> {
    const seatDir = options.seatDir ?? "/run/systemd/seats";
    const seat = options.seat ?? "seat0";
    if (seat === "" || seat === "." || seat === ".." || seat.includes("/")) {
      throw new TypeError(`Cannot watch seat "${seat}": a seat is a file name in ${seatDir}`);
    }
    const fallbackUid = options.fallbackUid;
    if (
      fallbackUid !== undefined &&
      !(Number.isInteger(fallbackUid) && fallbackUid >= 0 && fallbackUid <= MAX_UID)
    ) {
      throw new TypeError(`Cannot use fallback uid ${fallbackUid}: expected 0..${MAX_UID}`);
    }
    const path = seatDir.endsWith("/") ? `${seatDir}${seat}` : `${seatDir}/${seat}`;

    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(seatDir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const state: SeatState = fallbackUid === undefined ? {} : { activeUid: fallbackUid };
      log.info(
        "No logind seat folder at {seatDir}: the console user is {uid} for this run",
        { seatDir, uid: fallbackUid ?? "nobody" },
      );
      return new SeatWatcher("fallback", path, state);
    }
    if (!info.isDirectory) {
      throw new Deno.errors.NotADirectory(`Cannot watch seats in ${seatDir}: not a folder`);
    }

    // Watch first, then read: a switch between the two is then seen by the watch.
    const watcher = Deno.watchFs(seatDir, { recursive: false });
    const state = await _readSeatOrNobody(path);
    const self = new SeatWatcher("logind", path, state);
    self.#watcher = watcher;
    self.#pump = self.#watch(watcher);
    log.debug("Watching {path}: the console user is {uid}", {
      path,
      uid: state.activeUid ?? "nobody",
    });
    return self;
  }

  /** The uid of the seat's active user; `undefined` when nobody is active. */
  get consoleUid(): number | undefined {
    return this.#state.activeUid;
  }

  /** The seat's active session id (logind's `ACTIVE`); always absent on the fallback. */
  get activeSession(): string | undefined {
    return this.#state.activeSession;
  }

  /**
   * Calls `listener` each time the console uid changes (not when only the session does),
   * until the returned function is called or the watcher closes. A throwing listener is
   * logged and does not stop the others.
   */
  onChange(listener: SeatChangeListener): () => void {
    if (this.#closed) return () => {};
    // A wrapper, so that the same function added twice is two subscriptions.
    const entry: SeatChangeListener = (uid, previous) => listener(uid, previous);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /**
   * Stops watching and drops the listeners; resolves once no read or watch is pending.
   * The last known console uid stays readable.
   */
  async close(): Promise<void> {
    if (this.#closed) {
      await this.#pump;
      return;
    }
    this.#closed = true;
    this.#listeners.clear();
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#watcher?.close();
    await this.#pump;
    await this.#reading;
  }

  /** The same as {@linkcode SeatWatcher.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #watch(watcher: Deno.FsWatcher): Promise<void> {
    try {
      for await (const _event of watcher) this.#schedule();
    } catch (e) {
      if (this.#closed) return;
      log.warn("Watching {path} failed, taking nobody as the console user: {error}", {
        path: this.path,
        error: e,
      });
      this.#apply({});
      return;
    }
    if (!this.#closed) {
      log.warn("The watch on {path} ended, taking nobody as the console user", {
        path: this.path,
      });
      this.#apply({});
    }
  }

  /** Gathers events for DEBOUNCE_MS, then reads; events during a read ask for another. */
  #schedule(): void {
    if (this.#closed) return;
    if (this.#reading) {
      this.#dirty = true;
      return;
    }
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#reading = this.#refresh();
    }, DEBOUNCE_MS);
  }

  async #refresh(): Promise<void> {
    this.#dirty = false;
    const state = await _readSeatOrNobody(this.path);
    this.#reading = undefined;
    if (this.#closed) return;
    this.#apply(state);
    if (this.#dirty) this.#schedule();
  }

  #apply(state: SeatState): void {
    const previous = this.#state.activeUid;
    this.#state = state;
    if (state.activeUid === previous) return;
    log.info("Console user of {path} is now {uid} (was {previous})", {
      path: this.path,
      uid: state.activeUid ?? "nobody",
      previous: previous ?? "nobody",
    });
    for (const listener of [...this.#listeners]) {
      try {
        listener(state.activeUid, previous);
      } catch (e) {
        log.error("A console-user listener failed: {error}", { error: e });
      }
    }
  }
}

/**
 * Reads and parses a seat file. A missing file is a seat where nobody is active; a file that
 * cannot be read is taken the same way (fail closed), with a warning.
 */
async function _readSeatOrNobody(path: string): Promise<SeatState> {
  try {
    return parseSeatFile(await Deno.readTextFile(path));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      log.warn("Cannot read {path}, taking nobody as the console user: {error}", {
        path,
        error: e,
      });
    }
    return {};
  }
}
