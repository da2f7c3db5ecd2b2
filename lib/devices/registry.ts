/**
 * The device types the CLI and the configuration file can create, and the one entry point
 * that checks a spec's type and options: the type exists, every key is known, keys given
 * alone are flags, `busid` has the bus id form, and the type's own values are valid. Every
 * type accepts `busid`: the bus id to export under, except for `host`, where it selects the
 * host device, which is then exported under that same bus id as usbipd does (`export_busid`
 * overrides). Adding a device type is one file in `types/` and one entry here.
 *
 * @module
 */

import { busidProblem } from "../protocol/busid.ts";
import type {
  CreateContext,
  CreatedDevice,
  DeviceDescription,
  DeviceType,
  ParseContext,
  ParseError,
} from "./device_type.ts";
import { CDC_ACM_TYPE } from "./types/cdc_acm.ts";
import { FTDI_TYPE } from "./types/ftdi.ts";
import { GADGET_ZERO_TYPE } from "./types/gadget_zero.ts";
import { GOTEMP_TYPE } from "./types/gotemp.ts";
import { HOST_TYPE } from "./types/host.ts";
import { KEYBOARD_TYPE } from "./types/keyboard.ts";
import { MOUSE_TYPE } from "./types/mouse.ts";
import { STORAGE_TYPE } from "./types/storage.ts";
import { TABLET_TYPE } from "./types/tablet.ts";

/** Every device type by name, in the order help and messages list them. */
const _TYPES = {
  "gadget-zero": GADGET_ZERO_TYPE,
  keyboard: KEYBOARD_TYPE,
  host: HOST_TYPE,
  "cdc-acm": CDC_ACM_TYPE,
  ftdi: FTDI_TYPE,
  gotemp: GOTEMP_TYPE,
  mouse: MOUSE_TYPE,
  tablet: TABLET_TYPE,
  storage: STORAGE_TYPE,
} as const;

/** The name of a device type: `gadget-zero`, `keyboard`, `host`, ... */
export type DeviceTypeName = keyof typeof _TYPES;

/** The typed options of the device type `N`. */
export type DeviceOptionsOf<N extends DeviceTypeName> = typeof _TYPES[N] extends DeviceType<infer O>
  ? O
  : never;

/**
 * Every device type by name, in the order help and messages list them.
 *
 * @example The storage type requires an image
 * ```ts
 * import { DEVICE_TYPES } from "./registry.ts";
 * console.assert(DEVICE_TYPES.get("storage")?.keys.image?.required === true);
 * ```
 */
export const DEVICE_TYPES: ReadonlyMap<DeviceTypeName, DeviceType> = new Map(
  Object.entries(_TYPES) as [DeviceTypeName, DeviceType][],
);

/**
 * The valid device type names, in order.
 *
 * @example The names, first to last
 * ```ts
 * import { DEVICE_TYPE_NAMES } from "./registry.ts";
 * console.assert(DEVICE_TYPE_NAMES[0] === "gadget-zero" && DEVICE_TYPE_NAMES.includes("host"));
 * ```
 */
export const DEVICE_TYPE_NAMES: readonly DeviceTypeName[] = [...DEVICE_TYPES.keys()];

/**
 * Whether `name` names a device type.
 *
 * @example Known and unknown names
 * ```ts
 * import { isDeviceTypeName } from "./registry.ts";
 * console.assert(isDeviceTypeName("cdc-acm") && !isDeviceTypeName("floppy"));
 * ```
 */
export function isDeviceTypeName(name: string): name is DeviceTypeName {
  return Object.hasOwn(_TYPES, name);
}

/**
 * A spec of type `N` whose options are valid: the type, its typed options, and the bus id it
 * is exported under when the spec fixes it (`busid=`; for `host`, `export_busid`, else the
 * host bus id when `busid=` selects the device). For a union of names, a union of these (tell
 * them apart by `name`).
 */
export type ParsedDeviceOf<N extends DeviceTypeName> = N extends DeviceTypeName ? {
    readonly name: N;
    readonly type: DeviceType<DeviceOptionsOf<N>>;
    readonly options: DeviceOptionsOf<N>;
    readonly busid?: string;
  }
  : never;

/** A spec of any device type whose options are valid. */
export type ParsedDevice = ParsedDeviceOf<DeviceTypeName>;

/** What {@linkcode parseDevice} answers for a spec of type `N`. */
export type DeviceParseResult<N extends DeviceTypeName = DeviceTypeName> =
  | ({ readonly ok: true } & ParsedDeviceOf<N>)
  | ParseError;

/**
 * A {@linkcode ParseContext} that keeps every path as given (flags: the working folder).
 *
 * @example A relative socket path stays relative
 * ```ts
 * import { parseDevice, PATHS_AS_GIVEN } from "./registry.ts";
 * const r = parseDevice("keyboard", { socket: "kbd.sock" }, [], PATHS_AS_GIVEN);
 * console.assert(r.ok && r.options.socket === "kbd.sock");
 * ```
 */
export const PATHS_AS_GIVEN: ParseContext = { resolvePath: (path) => path };

/**
 * A {@linkcode ParseContext} that resolves relative paths against `folder` (a configuration
 * file's folder); absolute paths stay as they are.
 *
 * @example A configuration file's folder
 * ```ts
 * import { pathsRelativeTo } from "./registry.ts";
 * const ctx = pathsRelativeTo("/etc/usbipgw");
 * console.assert(ctx.resolvePath("disk.img") === "/etc/usbipgw/disk.img");
 * console.assert(ctx.resolvePath("/srv/disk.img") === "/srv/disk.img");
 * ```
 */
export function pathsRelativeTo(folder: string): ParseContext {
  const base = folder.endsWith("/") ? folder : `${folder}/`;
  return {
    resolvePath: (path) => path.startsWith("/") || folder === "" ? path : `${base}${path}`,
  };
}

function _fail(key: string, message: string): ParseError {
  return { ok: false, key, message };
}

/**
 * Checks a device spec: `typeName` names a type (else the error's key is `type`), every key
 * of `options` is `busid` or one of the type's keys, each key in `keysGivenAlone` (written
 * without `=value`; its value in `options` is empty) is a flag, `busid` has the form
 * `BUS-PORT[.PORT...]`, and the type's parse step accepts the values. Opens nothing; never
 * throws for bad input. Messages do not say where the spec came from: the caller adds that.
 *
 * @example A valid spec and an unknown key
 * ```ts
 * import { parseDevice, PATHS_AS_GIVEN } from "./registry.ts";
 * const ok = parseDevice("gadget-zero", { busid: "1-1", pattern: "1" }, [], PATHS_AS_GIVEN);
 * console.assert(ok.ok && ok.name === "gadget-zero" && ok.options.pattern === 1);
 * console.assert(ok.ok && ok.busid === "1-1");
 * const bad = parseDevice("keyboard", { colour: "red" }, [], PATHS_AS_GIVEN);
 * console.assert(!bad.ok && bad.key === "colour");
 * console.assert(!bad.ok && bad.message === 'Unknown key "colour" for keyboard; valid keys: busid, text, socket, serial');
 * ```
 */
export function parseDevice<N extends DeviceTypeName>(
  typeName: N,
  options: Readonly<Record<string, string>>,
  keysGivenAlone: readonly string[],
  context: ParseContext,
): DeviceParseResult<N>;
export function parseDevice(
  typeName: string,
  options: Readonly<Record<string, string>>,
  keysGivenAlone: readonly string[],
  context: ParseContext,
): DeviceParseResult;
export function parseDevice(
  typeName: string,
  options: Readonly<Record<string, string>>,
  keysGivenAlone: readonly string[],
  context: ParseContext,
): DeviceParseResult {
  if (!isDeviceTypeName(typeName)) {
    return _fail(
      "type",
      `Unknown device type "${typeName}"; valid types: ${DEVICE_TYPE_NAMES.join(", ")}`,
    );
  }
  const type: DeviceType = _TYPES[typeName];
  for (const key of Object.keys(options)) {
    if (key !== "busid" && !Object.hasOwn(type.keys, key)) {
      return _fail(
        key,
        `Unknown key "${key}" for ${typeName}; valid keys: ${
          ["busid", ...Object.keys(type.keys)].join(", ")
        }`,
      );
    }
  }
  const flags = Object.keys(type.keys).filter((k) => type.keys[k]!.kind === "flag");
  for (const key of keysGivenAlone) {
    if (!flags.includes(key)) {
      return _fail(
        key,
        `"${key}" is not key=value; ${
          flags.length > 0
            ? `only ${flags.join(", ")} may be given alone`
            : `no ${typeName} key may be given alone`
        }`,
      );
    }
  }
  const busid = options.busid;
  const busidWrong = busid === undefined ? undefined : busidProblem(busid);
  if (busidWrong !== undefined) return _fail("busid", busidWrong);
  const r = type.parse(options, context);
  if (!r.ok) return r;
  const exported = r.busid ?? busid;
  return {
    ok: true,
    name: typeName,
    type,
    options: r.options,
    ...(exported !== undefined ? { busid: exported } : {}),
  } as DeviceParseResult;
}

/** The type of `device` with options of any type: the union's members, taken apart. */
type _AnyParsed = { readonly type: DeviceType<unknown>; readonly options: unknown };

/**
 * The identity and descriptors of a parsed spec, without opening anything; `undefined` when
 * it cannot be known yet (a host device that is not plugged in).
 *
 * @example Describing a keyboard
 * ```ts
 * import { describeDevice, parseDevice, PATHS_AS_GIVEN } from "./registry.ts";
 * const p = parseDevice("keyboard", { serial: "K1" }, [], PATHS_AS_GIVEN);
 * const d = p.ok ? await describeDevice(p) : undefined;
 * console.assert(d?.descriptors.device.idVendor === 0x1209 && d.origin === "emulated");
 * ```
 */
export function describeDevice(device: ParsedDevice): Promise<DeviceDescription | undefined> {
  const { type, options } = device as _AnyParsed;
  return type.describe(options);
}

/**
 * Opens the back-ends of a parsed spec and builds its device.
 *
 * @example Creating and closing a Gadget Zero
 * ```ts
 * import { createDevice, parseDevice, PATHS_AS_GIVEN } from "./registry.ts";
 * const p = parseDevice("gadget-zero", {}, [], PATHS_AS_GIVEN);
 * const made = p.ok ? await createDevice(p, { label: "gadget-zero 1-1" }) : undefined;
 * console.assert(made?.device.descriptors.tree.device.idProduct === 0xa4a0);
 * await made?.close?.();
 * ```
 */
export function createDevice(
  device: ParsedDevice,
  context: CreateContext,
): Promise<CreatedDevice> {
  const { type, options } = device as _AnyParsed;
  return type.create(options, context);
}

/**
 * The "Device types:" section of `serve --help`: each type with its summary, then each of its
 * keys with its help, `(required)` or its default.
 *
 * @example The first lines of the section
 * ```ts
 * import { deviceTypesHelp } from "./registry.ts";
 * const help = deviceTypesHelp();
 * console.assert(help.startsWith("Device types:\n  gadget-zero "));
 * console.assert(help.includes("    pattern    IN data and OUT check: 0 zeros, 1 (i % maxpacket) % 63; default 0"));
 * ```
 */
export function deviceTypesHelp(): string {
  const lines = ["Device types:"];
  for (const type of DEVICE_TYPES.values()) {
    lines.push(`  ${type.name.padEnd(12)} ${type.summary}`);
    for (const [key, spec] of Object.entries(type.keys)) {
      const extra = spec.required
        ? " (required)"
        : spec.default !== undefined
        ? `; default ${spec.default}`
        : "";
      lines.push(`    ${key.padEnd(10)} ${spec.help}${extra}`);
    }
  }
  return `${lines.join("\n")}\n`;
}
