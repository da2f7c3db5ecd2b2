// Whether this machine can give a pty at all, checked on the facility itself before the pty
// tests run, so that they are ignored with the reason only then: posix_openpt(3) opens
// /dev/ptmx, the devpts multiplexer (Linux Documentation/filesystems/devpts.rst). Any other
// failure to open a pty is the back-end's own and fails its test.

/**
 * Why no pty can be had here: there is no /dev/ptmx, it is not the pty multiplexer (character
 * device 5:2, Documentation/admin-guide/devices.txt), or this process may not open it.
 * Undefined when it opens for reading and writing (a pty master never becomes the controlling
 * terminal, drivers/tty/tty_io.c, so the probe is harmless). Other errors are thrown.
 */
export function ptyProblem(): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync("/dev/ptmx");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "there is no /dev/ptmx (devpts) on this machine";
    throw e;
  }
  // Linux's dev_t: the major number in bits 8-19, the minor in bits 0-7 (and above 19).
  const rdev = info.rdev ?? 0;
  if (!info.isCharDevice || ((rdev >> 8) & 0xfff) !== 5 || (rdev & 0xff) !== 2) {
    return "/dev/ptmx is not the pty multiplexer (character device 5:2) on this machine";
  }
  try {
    Deno.openSync("/dev/ptmx", { read: true, write: true }).close();
    return undefined;
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      return `opening /dev/ptmx is not permitted here (${e.message})`;
    }
    throw e;
  }
}
