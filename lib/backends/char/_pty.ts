/**
 * The libc symbols the pty back-end needs through FFI (posix_openpt(3), grantpt(3),
 * unlockpt(3), ptsname(3), termios(3) cfmakeraw and the speed functions, poll(2), pipe2(2),
 * read(2), write(2)), and a small non-blocking master-side pty built on them. Opened lazily,
 * so FFI permission is only needed when a `pty` back-end is used.
 *
 * @module
 */

import { ERRNO_LOCATION, errnoAt, lazyLibc } from "../../ffi/libc.ts";

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
  // int cfsetispeed(struct termios *t, speed_t speed);
  cfsetispeed: { parameters: ["buffer", "u32"], result: "i32" },
  // int cfsetospeed(struct termios *t, speed_t speed);
  cfsetospeed: { parameters: ["buffer", "u32"], result: "i32" },
  // speed_t cfgetospeed(const struct termios *t);
  cfgetospeed: { parameters: ["buffer"], result: "u32" },
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
  ...ERRNO_LOCATION,
} as const satisfies Deno.ForeignLibraryInterface;

const O_RDWR = 0o2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TCSANOW = 0;
const EAGAIN = 11;
const EINTR = 4;
const EIO = 5;

/** Offset of c_cflag in struct termios (after c_iflag and c_oflag, two 32-bit words). */
const C_CFLAG = 8;
/** c_cflag bits (Linux asm-generic/termbits.h, octal as there). */
const CSIZE = 0o60;
const CSTOPB = 0o100;
const PARENB = 0o400;
const PARODD = 0o1000;
const CMSPAR = 0o10000000000;
const CS_BY_BITS: Readonly<Record<number, number>> = { 5: 0, 6: 0o20, 7: 0o40, 8: 0o60 };

/**
 * The termios speed codes (Linux `B50` .. `B4000000`) by bits per second: the rates a tty
 * can be set to by name (what `stty SPEED` and cfsetospeed(3) take).
 */
export const TERMIOS_SPEEDS: ReadonlyMap<number, number> = new Map([
  [50, 0o1],
  [75, 0o2],
  [110, 0o3],
  [134, 0o4],
  [150, 0o5],
  [200, 0o6],
  [300, 0o7],
  [600, 0o10],
  [1200, 0o11],
  [1800, 0o12],
  [2400, 0o13],
  [4800, 0o14],
  [9600, 0o15],
  [19200, 0o16],
  [38400, 0o17],
  [57600, 0o10001],
  [115200, 0o10002],
  [230400, 0o10003],
  [460800, 0o10004],
  [500000, 0o10005],
  [576000, 0o10006],
  [921600, 0o10007],
  [1000000, 0o10010],
  [1152000, 0o10011],
  [1500000, 0o10012],
  [2000000, 0o10013],
  [2500000, 0o10014],
  [3000000, 0o10015],
  [3500000, 0o10016],
  [4000000, 0o10017],
]);

/** A serial line's settings as a pty's termios holds them. */
export interface PtyLineSettings {
  /** Bits per second; `undefined` when the speed code is not one of {@linkcode TERMIOS_SPEEDS}. */
  baudRate: number | undefined;
  /** 5..8. */
  dataBits: number;
  parity: "none" | "odd" | "even" | "mark" | "space";
  stopBits: 1 | 2;
}

/** poll(2) event bits. */
export const PollEvent = { POLLIN: 0x1, POLLOUT: 0x4, POLLERR: 0x8, POLLHUP: 0x10 } as const;

const lib = lazyLibc(SYMBOLS);

function errno(): number {
  return errnoAt(lib().__errno_location());
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
    const s = lib();
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
   * Sets the slave's termios (through the master, as the tty layer allows) to a line's
   * settings: data bits (16 is set as 8), parity (mark and space with CMSPAR), stop bits (1.5
   * is set as 2, CSTOPB) and, when `baudRate` is one of {@linkcode TERMIOS_SPEEDS}, the
   * input and output speed. The other flags (raw mode) stay. Linux's pty driver keeps every
   * pty at CS8 without parity, so there only the speed and the stop bits show. Returns whether
   * the speed was set.
   *
   * @throws {Error} If tcgetattr or tcsetattr fails.
   */
  setLineSettings(s: {
    baudRate: number;
    dataBits: number;
    parity: PtyLineSettings["parity"];
    stopBits: number;
  }): boolean {
    const c = lib();
    const termios = new Uint8Array(128);
    const fail = (what: string) =>
      new Error(
        `Cannot set the line settings of the pty ${this.path}: ${what} failed with errno ${errno()}`,
      );
    if (c.tcgetattr(this.#fd, termios) < 0) throw fail("tcgetattr");
    const v = new DataView(termios.buffer);
    let cflag = v.getUint32(C_CFLAG, true) & ~(CSIZE | CSTOPB | PARENB | PARODD | CMSPAR);
    cflag |= CS_BY_BITS[s.dataBits] ?? CS_BY_BITS[8]!;
    if (s.stopBits !== 1) cflag |= CSTOPB;
    if (s.parity === "odd") cflag |= PARENB | PARODD;
    else if (s.parity === "even") cflag |= PARENB;
    else if (s.parity === "mark") cflag |= PARENB | CMSPAR | PARODD;
    else if (s.parity === "space") cflag |= PARENB | CMSPAR;
    v.setUint32(C_CFLAG, cflag >>> 0, true);
    const code = TERMIOS_SPEEDS.get(s.baudRate);
    if (code !== undefined) {
      if (c.cfsetispeed(termios, code) < 0) throw fail("cfsetispeed");
      if (c.cfsetospeed(termios, code) < 0) throw fail("cfsetospeed");
    }
    if (c.tcsetattr(this.#fd, TCSANOW, termios) < 0) throw fail("tcsetattr");
    return code !== undefined;
  }

  /**
   * The slave's line settings as its termios holds them now (whoever set them: the back-end
   * or a program on the slave).
   *
   * @throws {Error} If tcgetattr fails.
   */
  lineSettings(): PtyLineSettings {
    const c = lib();
    const termios = new Uint8Array(128);
    if (c.tcgetattr(this.#fd, termios) < 0) {
      throw new Error(`Cannot read the termios of the pty ${this.path}: errno ${errno()}`);
    }
    const cflag = new DataView(termios.buffer).getUint32(C_CFLAG, true);
    const code = c.cfgetospeed(termios);
    const size = cflag & CSIZE;
    const parity = (cflag & PARENB) === 0
      ? "none"
      : (cflag & CMSPAR) !== 0
      ? (cflag & PARODD) !== 0 ? "mark" : "space"
      : (cflag & PARODD) !== 0
      ? "odd"
      : "even";
    return {
      baudRate: [...TERMIOS_SPEEDS].find(([, c]) => c === code)?.[0],
      dataBits: Number(Object.keys(CS_BY_BITS).find((b) => CS_BY_BITS[Number(b)] === size)),
      parity,
      stopBits: (cflag & CSTOPB) !== 0 ? 2 : 1,
    };
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
    await lib().poll(this.#pollfds, 2n, timeoutMs);
    if ((v.getInt16(14, true) & PollEvent.POLLIN) !== 0) {
      const drain = new Uint8Array(64);
      while (Number(lib().read(this.#wakeRead, drain, BigInt(drain.length))) > 0) {
        // Emptying the wake pipe.
      }
    }
    return watchMaster ? v.getInt16(6, true) : 0;
  }

  /** Makes a pending or the next {@linkcode PtyMaster.poll} return. */
  wake(): void {
    if (this.#closed) return;
    lib().write(this.#wakeWrite, new Uint8Array(1), 1n);
  }

  /** Reads what the slave side wrote, without blocking. */
  read(buffer: Uint8Array): IoResult {
    return this.#io(Number(lib().read(this.#fd, buffer, BigInt(buffer.length))));
  }

  /** Writes towards the slave side, without blocking. */
  write(buffer: Uint8Array): IoResult {
    return this.#io(Number(lib().write(this.#fd, buffer, BigInt(buffer.length))));
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
    const s = lib();
    s.close(this.#fd);
    s.close(this.#wakeRead);
    s.close(this.#wakeWrite);
  }
}
