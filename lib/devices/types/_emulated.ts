/**
 * What the emulated device types share: {@linkcode emulatedType} makes a `DeviceType` from its
 * keys, a read step over a {@linkcode KeyReader}, its descriptors and speed, and a create
 * step; {@linkcode overBackEnd} and {@linkcode fedByTextSocket} are the create steps' two
 * shapes (a device over a back-end that closes with it, a device fed by a text socket).
 * Private to `lib/devices/types/`.
 *
 * @module
 */

import { Speed, type SpeedValue } from "../../protocol/constants.ts";
import { openTextSocket, type TextConsumer } from "../../backends/text_socket.ts";
import type { UsbDescriptors } from "../descriptors.ts";
import type {
  CreateContext,
  CreatedDevice,
  DeviceType,
  KeySpec,
  ParseContext,
} from "../device_type.ts";
import type { UsbDevice } from "../usb_device.ts";
import { type KeyReader, parseWith } from "./_keys.ts";

/** What makes an emulated device type; `O` is its typed options. */
export interface EmulatedTypeSpec<O> {
  readonly name: string;
  /** One line for `serve --help`. */
  readonly summary: string;
  /** Accepted keys besides `busid`, in the order help and messages list them. */
  readonly keys: Readonly<Record<string, KeySpec>>;
  /** Reads every key through `r`, which stops the parse step at the first bad value. */
  read(r: KeyReader, context: ParseContext): O;
  /** The descriptors the created device will have; opens nothing. */
  descriptors(options: O): UsbDescriptors | Promise<UsbDescriptors>;
  /** The speed the created device will have; full speed when absent. */
  speed?(options: O): SpeedValue;
  /** Opens the back-ends and builds the device; on failure, closes what it opened. */
  create(options: O, context: CreateContext): Promise<CreatedDevice>;
}

/**
 * The device type of `spec`: its parse step runs `read` (a bad key becomes a `ParseError`),
 * its describe step gives `descriptors` and `speed` with the origin `emulated`.
 */
export function emulatedType<O>(spec: EmulatedTypeSpec<O>): DeviceType<O> {
  const { name, summary, keys } = spec;
  return {
    name,
    summary,
    keys,
    parse: (options, context) =>
      parseWith(name, keys, options, (r) => ({ options: spec.read(r, context) })),
    describe: async (options) => ({
      descriptors: await spec.descriptors(options),
      speed: spec.speed?.(options) ?? Speed.FULL,
      origin: "emulated",
    }),
    create: (options, context) => spec.create(options, context),
  };
}

/**
 * The device `build` makes over `backEnd`, already open, which then closes with it; when
 * `build` throws, `backEnd` is closed and the error thrown on.
 */
export async function overBackEnd<B extends { close(): Promise<void> }>(
  backEnd: B,
  build: (backEnd: B) => UsbDevice,
): Promise<CreatedDevice> {
  try {
    const device = build(backEnd);
    return { device, close: () => backEnd.close() };
  } catch (e) {
    await backEnd.close();
    throw e;
  }
}

/**
 * `device`, fed by a text socket (mode 0600) at `socket` whose text goes to `consume` and
 * which closes, removing its file, with the device; `device` alone when `socket` is absent.
 */
export async function fedByTextSocket(
  device: UsbDevice,
  socket: string | undefined,
  context: CreateContext,
  consume: TextConsumer,
): Promise<CreatedDevice> {
  if (socket === undefined) return { device };
  const input = await openTextSocket({ path: socket, mode: 0o600, label: context.label }, consume);
  return { device, close: () => input.close() };
}
