/**
 * The device types the CLI and the configuration file can create, with the keys each one
 * accepts. Every type also accepts `busid`. Unknown types, keys and values are usage errors
 * that list what is valid.
 *
 * @module
 */

import type { UsbDevice } from "../devices/usb_device.ts";
import { GadgetZero } from "../devices/gadget_zero.ts";
import { HidKeyboard } from "../devices/keyboard.ts";
import { openTextSocket } from "../backends/text_socket.ts";
import type { DeviceSpec } from "./device_spec.ts";
import { UsageError } from "./usage_error.ts";

/** A created device and what must be closed with it. */
export interface CreatedDevice {
  device: UsbDevice;
  /** Releases back-ends the device uses (sockets, files). */
  close?(): Promise<void>;
}

/** A device type the CLI knows. */
export interface DeviceType {
  readonly name: string;
  readonly summary: string;
  /** Accepted keys (besides `busid`) and what each means. */
  readonly keys: Readonly<Record<string, string>>;
  create(spec: DeviceSpec): Promise<CreatedDevice>;
}

function choice<T extends string>(
  spec: DeviceSpec,
  key: string,
  values: readonly T[],
  fallback: T,
): T {
  const v = spec.options[key];
  if (v === undefined) return fallback;
  if (!(values as readonly string[]).includes(v)) {
    throw new UsageError(
      `Invalid ${key}="${v}" for ${spec.type} in ${spec.origin}: expected ${values.join(" or ")}`,
    );
  }
  return v as T;
}

/** Every device type, by name. */
export const DEVICE_TYPES: ReadonlyMap<string, DeviceType> = new Map<string, DeviceType>([
  ["gadget-zero", {
    name: "gadget-zero",
    summary: "Linux Gadget Zero (0525:a4a0), the usbtest conformance device",
    keys: {
      pattern: "IN data and OUT check: 0 zeros (default), 1 (i % maxpacket) % 63",
      speed: "high (default) or full",
    },
    create(spec) {
      const pattern = choice(spec, "pattern", ["0", "1"], "0") === "1" ? 1 : 0;
      const speed = choice(spec, "speed", ["high", "full"], "high");
      return Promise.resolve({ device: new GadgetZero({ pattern, speed }) });
    },
  }],
  ["keyboard", {
    name: "keyboard",
    summary: "HID boot keyboard that types text",
    keys: {
      text: "text typed once the host starts polling the keyboard",
      socket: "unix socket path: text written to it is typed",
      serial: "serial number string",
    },
    async create(spec) {
      const { text, socket, serial } = spec.options;
      let keyboard: HidKeyboard;
      try {
        keyboard = new HidKeyboard({
          ...(text !== undefined ? { text } : {}),
          ...(serial !== undefined ? { serial } : {}),
        });
      } catch (e) {
        throw new UsageError(`Invalid keyboard in ${spec.origin}: ${(e as Error).message}`);
      }
      if (socket === undefined) return { device: keyboard };
      const input = await openTextSocket({ path: socket, mode: 0o600 }, (t) => keyboard.type(t));
      return { device: keyboard, close: () => input.close() };
    },
  }],
]);

/** Checks a spec's type and keys; returns its type. */
export function checkDeviceSpec(spec: DeviceSpec): DeviceType {
  const type = DEVICE_TYPES.get(spec.type);
  if (type === undefined) {
    throw new UsageError(
      `Unknown device type "${spec.type}" in ${spec.origin}; valid types: ${
        [...DEVICE_TYPES.keys()].join(", ")
      }`,
    );
  }
  for (const key of Object.keys(spec.options)) {
    if (key !== "busid" && !(key in type.keys)) {
      throw new UsageError(
        `Unknown key "${key}" for ${spec.type} in ${spec.origin}; valid keys: ${
          ["busid", ...Object.keys(type.keys)].join(", ")
        }`,
      );
    }
  }
  return type;
}
