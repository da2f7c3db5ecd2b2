/**
 * What the serial device types (`cdc-acm`, `ftdi`) share: the required `backend` key, a
 * character back-end description checked with `parseBackendSpec` (its `unix:` and `file:`
 * paths resolved), which the create step opens and builds the device over. Private to
 * `lib/devices/types/`.
 *
 * @module
 */

import type { SpeedValue } from "../../protocol/constants.ts";
import {
  BACKEND_FORMS,
  type BackendSpec,
  type CharBackend,
  openCharBackend,
  parseBackendSpec,
} from "../../backends/char/mod.ts";
import type { UsbDescriptors } from "../descriptors.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import type { UsbDevice } from "../usb_device.ts";
import { emulatedType, overBackEnd } from "./_emulated.ts";
import type { KeyReader } from "./_keys.ts";

/** Where the serial devices' data can go, as the help and the messages list it. */
const FORMS = `${BACKEND_FORMS.slice(0, -1).join(", ")} or ${BACKEND_FORMS.at(-1)}`;

/** The `backend` key's spec. */
const BACKEND_KEY: KeySpec = {
  kind: "backend",
  required: true,
  help: `where the serial data goes: ${FORMS}`,
};

/** Reads the required `backend` key of a `type` spec; opens nothing. */
function readBackend(
  r: KeyReader,
  type: string,
  resolvePath: (path: string) => string,
): BackendSpec {
  const text = r.text("backend");
  if (text === undefined) {
    return r.fail("backend", `Missing backend=... for ${type}: expected ${FORMS}`);
  }
  let spec: BackendSpec;
  try {
    spec = parseBackendSpec(text);
  } catch (e) {
    return r.fail("backend", `Invalid backend for ${type}: ${(e as Error).message}`);
  }
  return spec.kind === "unix" || spec.kind === "file"
    ? { kind: spec.kind, path: resolvePath(spec.path) }
    : spec;
}

/** The `backend` option of every serial device type. */
export interface SerialTypeOptions {
  /** The back-end, its path resolved. */
  readonly backend: BackendSpec;
}

/**
 * What makes a serial device type whose other options are `R`: as an emulated type's
 * (`EmulatedTypeSpec`), but for the `backend` key, which comes first and is opened for
 * `build`.
 */
export interface SerialTypeSpec<R> {
  readonly name: string;
  /** One line for `serve --help`. */
  readonly summary: string;
  /** The keys besides `backend`, in the order help and messages list them. */
  readonly keys: Readonly<Record<string, KeySpec>>;
  /** Reads the keys besides `backend`. */
  read(r: KeyReader): R;
  descriptors(options: SerialTypeOptions & R): UsbDescriptors;
  /** The speed; full speed when absent. */
  speed?(options: SerialTypeOptions & R): SpeedValue;
  /** Builds the device over `backend`, opened. */
  build(backend: CharBackend, options: SerialTypeOptions & R): UsbDevice;
}

/**
 * The serial device type of `spec`: its create step opens the back-end for the device and
 * builds the device over it; the back-end closes with the device, or at once when building
 * fails.
 */
export function serialDeviceType<R>(spec: SerialTypeSpec<R>): DeviceType<SerialTypeOptions & R> {
  const { name, speed } = spec;
  return emulatedType<SerialTypeOptions & R>({
    name,
    summary: spec.summary,
    keys: { backend: BACKEND_KEY, ...spec.keys },
    read: (r, context) => ({ backend: readBackend(r, name, context.resolvePath), ...spec.read(r) }),
    descriptors: (options) => spec.descriptors(options),
    ...(speed === undefined ? {} : { speed }),
    create: async (options, context) =>
      overBackEnd(
        await openCharBackend(options.backend, { label: context.label }),
        (backend) => spec.build(backend, options),
      ),
  });
}
