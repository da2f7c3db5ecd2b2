/**
 * The libc symbols the pty back-end needs through FFI (posix_openpt(3), grantpt(3),
 * unlockpt(3), ptsname(3), termios(3) cfmakeraw, poll(2), pipe2(2), read(2), write(2)),
 * and a small non-blocking master-side pty built on them. Opened lazily, so FFI permission is
 * only needed when a `pty` back-end is used.
 *
 * @module
 */

const SYMBOLS = {
  // int posix_openpt(int flags);
  posix_openpt: { parameters: ["i32"], result: "i32" },
  // int grantpt(int fd);
  grantpt: { parameters: ["i32"], result: "i32" },
  // int unlockpt(int fd);
  unlockpt: { parameters: ["i32"], result: "i32" },
  // char *ptsname(int fd);
  ptsname: { parameters: ["i32"], result: "pointer" },
  // int tcgetattr(int fd, struct termios *t);
  tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
  // void cfmakeraw(struct termios *t);
  cfmakeraw: { parameters: ["buffer"], result: "void" },
  // int tcsetattr(int fd, int optional_actions, const struct termios *t);
  tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  // int pipe2(int fds[2], int flags);
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout); run off the main thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const O_RDWR = 0o2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TCSANOW = 0;
const EAGAIN = 11;
const EINTR = 4;
const EIO = 5;

/** poll(2) event bits. */
export const PollEvent = { POLLIN: 0x1, POLLOUT: 0x4, POLLERR: 0x8, POLLHUP: 0x10 } as const;

let libc: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

function open(): Deno.DynamicLibrary<typeof SYMBOLS> {
  libc ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return libc;
}

function errno(): number {
  const p = open().symbols.__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

function check(what: string, result: number): void {
  if (result < 0) throw new Error(`Cannot open a pty: ${what} failed with errno ${errno()}`);
}

/** The result of a non-blocking read or write on the master. */
export type IoResult = number | "again" | "hangup";

/**
 * The master side of a fresh Unix 98 pty with its slave in raw mode (as `cfmakeraw` sets it,
 * so that the line discipline neither echoes nor translates), plus a self-pipe that wakes
 * {@linkcode PtyMaster.poll} from the main thread.
 */
export class PtyMaster {
  /** The slave's path, e.g. `/dev/pts/3`. */
  readonly path: string;
  #fd: number;
  #wakeRead: number;
  #wakeWrite: number;
  #pollfds = new Uint8Array(16);
  #closed = false;

  private constructor(fd: number, path: string, wakeRead: number, wakeWrite: number) {
    this.#fd = fd;
    this.path = path;
    this.#wakeRead = wakeRead;
    this.#wakeWrite = wakeWrite;
  }

  /**
   * Opens a pty (posix_openpt, grantpt, unlockpt, ptsname) and puts the slave in raw mode.
   *
   * @throws {Error} If libc cannot be loaded or a call fails.
   */
  static open(): PtyMaster {
    const s = open().symbols;
    const fd = s.posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    check("posix_openpt", fd);
    try {
      check("grantpt", s.grantpt(fd));
      check("unlockpt", s.unlockpt(fd));
      const name = s.ptsname(fd);
      if (name === null) throw new Error(`Cannot open a pty: ptsname failed with errno ${errno()}`);
      const path = new Deno.UnsafePointerView(name).getCString();
      // glibc's struct termios is 60 bytes; the spare room costs nothing.
      const termios = new Uint8Array(128);
      check("tcgetattr", s.tcgetattr(fd, termios));
      s.cfmakeraw(termios);
      check("tcsetattr", s.tcsetattr(fd, TCSANOW, termios));
      const pipe = new Int32Array(2);
      check("pipe2", s.pipe2(new Uint8Array(pipe.buffer), O_NONBLOCK | O_CLOEXEC));
      return new PtyMaster(fd, path, pipe[0]!, pipe[1]!);
    } catch (e) {
      s.close(fd);
      throw e;
    }
  }

  /**
   * Waits (on a libc thread) until the master is ready for `events`, reports a hangup, the
   * wake pipe is written, or `timeoutMs` passes (-1: no limit). With `watchMaster` false only
   * the wake pipe and the timeout end the wait. Resolves with the master's `revents`.
   */
  async poll(events: number, timeoutMs: number, watchMaster = true): Promise<number> {
    const v = new DataView(this.#pollfds.buffer);
    v.setInt32(0, watchMaster ? this.#fd : -1, true);
    v.setInt16(4, events, true);
    v.setInt16(6, 0, true);
    v.setInt32(8, this.#wakeRead, true);
    v.setInt16(12, PollEvent.POLLIN, true);
    v.setInt16(14, 0, true);
    await open().symbols.poll(this.#pollfds, 2n, timeoutMs);
    if ((v.getInt16(14, true) & PollEvent.POLLIN) !== 0) {
      const drain = new Uint8Array(64);
      while (Number(open().symbols.read(this.#wakeRead, drain, BigInt(drain.length))) > 0) {
        // Emptying the wake pipe.
      }
    }
    return watchMaster ? v.getInt16(6, true) : 0;
  }

  /** Makes a pending or the next {@linkcode PtyMaster.poll} return. */
  wake(): void {
    if (this.#closed) return;
    open().symbols.write(this.#wakeWrite, new Uint8Array(1), 1n);
  }

  /** Reads what the slave side wrote, without blocking. */
  read(buffer: Uint8Array): IoResult {
    return this.#io(Number(open().symbols.read(this.#fd, buffer, BigInt(buffer.length))));
  }

  /** Writes towards the slave side, without blocking. */
  write(buffer: Uint8Array): IoResult {
    return this.#io(Number(open().symbols.write(this.#fd, buffer, BigInt(buffer.length))));
  }

  #io(n: number): IoResult {
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN || e === EINTR) return "again";
    if (e === EIO) return "hangup";
    throw new Error(`Cannot use the pty ${this.path}: errno ${e}`);
  }

  /** Closes the master (the slave side sees a hangup) and the wake pipe. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const s = open().symbols;
    s.close(this.#fd);
    s.close(this.#wakeRead);
    s.close(this.#wakeWrite);
  }
}
