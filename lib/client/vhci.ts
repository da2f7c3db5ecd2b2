/**
 * Linux vhci_hcd's sysfs interface (drivers/usb/usbip/vhci_sysfs.c): the `status`,
 * `status.N` files of every controller, `attach` (`"port sockfd devid speed"`) and `detach`
 * (`"port"`), all on `/sys/devices/platform/vhci_hcd.0`; plus the usbip tool's port records
 * in `/var/run/vhci_hcd/port<N>` (`"host service busid\n"`, tools/usb/usbip), kept the same
 * way so that `usbip port` and `usbipgw port` read each other's.
 *
 * Ports are numbered across controllers: controller N owns ports `N * 2 * H` to
 * `N * 2 * H + 2 * H - 1`, the first H on its high-speed hub ("hs"), the next H on its
 * SuperSpeed hub ("ss"); H is 8 unless the kernel was built otherwise.
 *
 * @module
 */

import { Speed } from "../protocol/constants.ts";
import { writeAttribute as writeAttributeFfi } from "./_libc_socket.ts";

/** vhci port states (`enum usbip_device_status`, usbip_common.h). */
export const VdevStatus = {
  VDEV_ST_NULL: 4,
  VDEV_ST_NOTASSIGNED: 5,
  VDEV_ST_USED: 6,
  VDEV_ST_ERROR: 7,
} as const;

const STATUS_NAMES: Record<number, string> = {
  [VdevStatus.VDEV_ST_NULL]: "free",
  [VdevStatus.VDEV_ST_NOTASSIGNED]: "initializing",
  [VdevStatus.VDEV_ST_USED]: "in use",
  [VdevStatus.VDEV_ST_ERROR]: "error",
};

/** A port state's name: `free`, `initializing`, `in use`, `error`. */
export function vdevStatusName(status: number): string {
  return STATUS_NAMES[status] ?? `status ${status}`;
}

const SPEED_NAMES: Record<number, string> = {
  [Speed.UNKNOWN]: "unknown",
  [Speed.LOW]: "low",
  [Speed.FULL]: "full",
  [Speed.HIGH]: "high",
  [Speed.WIRELESS]: "wireless",
  [Speed.SUPER]: "super",
  [Speed.SUPER_PLUS]: "super-plus",
};

/** A USB speed's name: `low`, `full`, `high`, `super`, ... */
export function speedName(speed: number): string {
  return SPEED_NAMES[speed] ?? `speed ${speed}`;
}

/** A vhci root hub: high speed (USB 2.0 and slower) or SuperSpeed. */
export type VhciHub = "hs" | "ss";

/** One line of a vhci status file. */
export interface VhciPort {
  /** The controller whose status file listed it (`status` is 0, `status.N` is N). */
  controller: number;
  /** The root hub the port belongs to: `hs` up to high speed, `ss` for SuperSpeed. */
  hub: VhciHub;
  /** The port number that `attach`, `detach` and the records use. */
  port: number;
  /** One of {@linkcode VdevStatus}. */
  status: number;
  /** The remote device's speed; 0 unless the port is in use. */
  speed: number;
  /** `busnum << 16 | devnum` on the server; 0 unless the port is in use. */
  devid: number;
  /** The server's bus number, the high 16 bits of `devid`. */
  busnum: number;
  /** The device's number on the server's bus, the low 16 bits of `devid`. */
  devnum: number;
  /** The fd number the attaching process wrote; null on kernels that print a pointer. */
  sockfd: number | null;
  /** The device's bus id on this machine (e.g. `3-1`), or null. */
  localBusid: string | null;
}

/** The kernel's sysfs has no vhci_hcd (the module is not loaded). */
export class VhciMissingError extends Error {
  /** Builds the error for the folder that was looked for. */
  constructor(dir: string) {
    super(`Cannot use vhci_hcd: ${dir} does not exist; load the module with "modprobe vhci-hcd"`);
    this.name = "VhciMissingError";
  }
}

/**
 * Parses one vhci status file. Knows the format of Linux 4.14 and later
 * (`hub port sta spd dev sockfd local_busid`) and the one before SuperSpeed ports
 * (`port sta spd dev socket local_busid`, all ports high speed).
 *
 * @example A high-speed port in use
 * ```ts
 * import { parseVhciStatus } from "./vhci.ts";
 * const [p] = parseVhciStatus(
 *   "hub port sta spd dev      sockfd local_busid\n" +
 *     "hs  0000 006 003 00010002 000003 3-1\n",
 * );
 * console.assert(p!.port === 0 && p!.busnum === 1 && p!.devnum === 2 && p!.localBusid === "3-1");
 * ```
 *
 * @throws {SyntaxError} For a line that is not in either format.
 */
export function parseVhciStatus(text: string, controller = 0): VhciPort[] {
  const lines = text.split("\n");
  const header = lines[0]?.trim().split(/\s+/) ?? [];
  const withHub = header[0] === "hub";
  if (!withHub && header[0] !== "port") {
    throw new SyntaxError(`Cannot parse vhci status: unknown header "${lines[0]}"`);
  }
  const ports: VhciPort[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    const f = line.split(/\s+/);
    const bad = (why: string) =>
      new SyntaxError(`Cannot parse vhci status line ${i + 1} "${line}": ${why}`);
    if (f.length !== (withHub ? 7 : 6)) throw bad(`${f.length} fields`);
    const [hub, portText, sta, spd, dev, sock, busid] = withHub ? f : ["hs", ...f];
    if (hub !== "hs" && hub !== "ss") throw bad(`hub "${hub}"`);
    for (const [name, v] of [["port", portText], ["sta", sta], ["spd", spd]] as const) {
      if (!/^\d+$/.test(v!)) throw bad(`${name} "${v}"`);
    }
    if (!/^[0-9a-fA-F]{1,8}$/.test(dev!)) throw bad(`dev "${dev}"`);
    const devid = parseInt(dev!, 16);
    const status = Number(sta);
    ports.push({
      controller,
      hub,
      port: Number(portText),
      status,
      speed: Number(spd),
      devid,
      busnum: devid >>> 16,
      devnum: devid & 0xffff,
      sockfd: withHub && /^\d+$/.test(sock!) && status !== VdevStatus.VDEV_ST_NULL
        ? Number(sock)
        : null,
      localBusid: busid === "0-0" ? null : busid!,
    });
  }
  return ports;
}

/** The vhci_hcd.0 folder under a sysfs mount. */
export function vhciDir(sysfsRoot = "/sys"): string {
  return `${sysfsRoot}/devices/platform/vhci_hcd.0`;
}

/**
 * Reads every controller's status file (`status`, `status.1`, ...) from
 * `<sysfsRoot>/devices/platform/vhci_hcd.0`, ordered by port.
 *
 * @throws {VhciMissingError} When vhci_hcd is not loaded.
 */
export async function readVhciPorts(sysfsRoot = "/sys"): Promise<VhciPort[]> {
  const dir = vhciDir(sysfsRoot);
  const files: [number, string][] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      const m = /^status(?:\.(\d+))?$/.exec(e.name);
      if (m) files.push([m[1] === undefined ? 0 : Number(m[1]), e.name]);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new VhciMissingError(dir);
    throw e;
  }
  if (files.length === 0) throw new VhciMissingError(`${dir}/status`);
  const ports: VhciPort[] = [];
  for (const [controller, name] of files) {
    ports.push(...parseVhciStatus(await Deno.readTextFile(`${dir}/${name}`), controller));
  }
  return ports.sort((a, b) => a.port - b.port);
}

/** The root hub a device of `speed` goes to: SuperSpeed from 5 (SUPER) up. */
export function hubForSpeed(speed: number): VhciHub {
  return speed >= Speed.SUPER ? "ss" : "hs";
}

/**
 * The first free port of the hub that fits `speed`, skipping `exclude`; undefined when none.
 *
 * @example
 * ```ts
 * import { chooseFreePort, parseVhciStatus } from "./vhci.ts";
 * const ports = parseVhciStatus(
 *   "hub port sta spd dev      sockfd local_busid\n" +
 *     "hs  0000 006 003 00010002 000003 3-1\n" +
 *     "hs  0001 004 000 00000000 000000 0-0\n" +
 *     "ss  0002 004 000 00000000 000000 0-0\n",
 * );
 * console.assert(chooseFreePort(ports, 3)?.port === 1);
 * console.assert(chooseFreePort(ports, 5)?.port === 2);
 * ```
 */
export function chooseFreePort(
  ports: readonly VhciPort[],
  speed: number,
  exclude: ReadonlySet<number> = new Set(),
): VhciPort | undefined {
  const hub = hubForSpeed(speed);
  return ports.find((p) =>
    p.hub === hub && p.status === VdevStatus.VDEV_ST_NULL && !exclude.has(p.port)
  );
}

/** What vhci's `attach` takes. */
export interface VhciAttachRequest {
  port: number;
  sockfd: number;
  devid: number;
  speed: number;
}

/**
 * The text written to `attach`: `"port sockfd devid speed"` in decimal.
 *
 * @example
 * ```ts
 * import { formatAttach } from "./vhci.ts";
 * console.assert(formatAttach({ port: 8, sockfd: 5, devid: 0x10002, speed: 5 }) === "8 5 65538 5");
 * ```
 */
export function formatAttach(r: VhciAttachRequest): string {
  return `${r.port} ${r.sockfd} ${r.devid >>> 0} ${r.speed}`;
}

/** Writes one sysfs attribute; throws an error carrying `errno` on failure. */
export type AttributeWriter = (path: string, text: string) => void;

/** The real writer: one write(2), the kernel's errno kept (`OsError`). */
export const writeAttribute: AttributeWriter = writeAttributeFfi;

/** Writes `"port sockfd devid speed"` to vhci's `attach` (from the process owning sockfd). */
export function writeVhciAttach(
  r: VhciAttachRequest,
  sysfsRoot = "/sys",
  write: AttributeWriter = writeAttribute,
): void {
  write(`${vhciDir(sysfsRoot)}/attach`, formatAttach(r));
}

/** Writes the port number to vhci's `detach`; the kernel shuts the connection down. */
export function writeVhciDetach(
  port: number,
  sysfsRoot = "/sys",
  write: AttributeWriter = writeAttribute,
): void {
  write(`${vhciDir(sysfsRoot)}/detach`, String(port));
}

// --- port records (usbip tool compatible) ----------------------------------------------------

/** Where the usbip tool keeps its port records. */
export const VHCI_STATE_DIR = "/var/run/vhci_hcd";

/** Who a port's device came from, as recorded at attach time. */
export interface PortRecord {
  /** The server's host as the user named it; `unix:PATH` for a unix socket. */
  host: string;
  /** The TCP port as text (`3240`); `-` for a unix socket. */
  service: string;
  /** The device's bus id on the server. */
  busid: string;
}

// The record is three space-separated words: whitespace and % in a word are %-escaped.
function escapeWord(s: string): string {
  return s.replace(/[%\s]/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function unescapeWord(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

/**
 * The record line: `"host service busid\n"`, as `usbip attach` writes it.
 *
 * @example
 * ```ts
 * import { formatPortRecord } from "./vhci.ts";
 * const line = formatPortRecord({ host: "127.0.0.1", service: "3240", busid: "1-1" });
 * console.assert(line === "127.0.0.1 3240 1-1\n");
 * ```
 */
export function formatPortRecord(r: PortRecord): string {
  return `${escapeWord(r.host)} ${escapeWord(r.service)} ${escapeWord(r.busid)}\n`;
}

/** Parses a record line; undefined unless it has three words. */
export function parsePortRecord(text: string): PortRecord | undefined {
  const words = text.split("\n")[0]!.trim().split(/\s+/);
  if (words.length !== 3 || words.some((w) => w === "")) return undefined;
  return {
    host: unescapeWord(words[0]!),
    service: unescapeWord(words[1]!),
    busid: unescapeWord(words[2]!),
  };
}

/** `usbip://host:service/busid`, the form `usbip port` prints. */
export function recordUri(r: PortRecord): string {
  return `usbip://${r.host}:${r.service}/${r.busid}`;
}

/** Writes `<dir>/port<N>` (mode 0700 in a 0700 folder, as the usbip tool). */
export async function writePortRecord(dir: string, port: number, r: PortRecord): Promise<void> {
  await Deno.mkdir(dir, { mode: 0o700, recursive: true });
  if (!(await Deno.stat(dir)).isDirectory) {
    throw new Deno.errors.AlreadyExists(`Cannot record port ${port}: ${dir} is not a folder`);
  }
  const path = `${dir}/port${port}`;
  await Deno.writeTextFile(path, formatPortRecord(r), { mode: 0o700 });
}

/** Reads `<dir>/port<N>`; undefined when there is none (or it is unreadable). */
export async function readPortRecord(dir: string, port: number): Promise<PortRecord | undefined> {
  try {
    return parsePortRecord(await Deno.readTextFile(`${dir}/port${port}`));
  } catch {
    return undefined;
  }
}

/** Removes `<dir>/port<N>`, and the folder once it is empty (as `usbip detach`). */
export async function removePortRecord(dir: string, port: number): Promise<void> {
  await Deno.remove(`${dir}/port${port}`).catch(() => {});
  await Deno.remove(dir).catch(() => {});
}
