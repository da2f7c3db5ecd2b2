/**
 * What a device type is: its keys (kind, default, help), a parse step that turns `key=value`
 * text into typed options or a structured error naming the key, a describe step that gives the
 * device's identity and descriptors without opening anything, and a create step that opens its
 * back-ends and builds it. `registry.ts` lists the types and checks what is common to all of
 * them (the type name, unknown keys, keys given alone, `busid`) before a type's parse step.
 *
 * @module
 */

import type { SpeedValue } from "../protocol/constants.ts";
import type { UsbDescriptors } from "./descriptors.ts";
import type { UsbDevice } from "./usb_device.ts";

/** What a key's value is; help, completion and the man page use it. */
export type KeyKind =
  | "text"
  | "path"
  | "choice"
  | "flag"
  | "hex16"
  | "number"
  | "size"
  | "busid"
  | "backend"
  | "source";

/** One key a device type accepts. */
export interface KeySpec {
  readonly kind: KeyKind;
  /** For `choice`: the accepted values. */
  readonly choices?: readonly string[];
  /** The value used when the key is absent, as text for the help. */
  readonly default?: string;
  readonly required?: boolean;
  /** One line: what the key does (and, for a choice, what each value means). */
  readonly help: string;
}

/** What a parse step needs besides the options: how to resolve the paths they name. */
export interface ParseContext {
  /**
   * Resolves a path given in this spec: relative paths in a configuration file resolve
   * against the file's folder; paths in flags stay as given (the working folder).
   */
  resolvePath(path: string): string;
}

/** A parse step's answer: typed options, or the key that is wrong and why. */
export type ParseResult<O> =
  | {
    readonly ok: true;
    readonly options: O;
    /** The bus id the device is exported under, when the options fix it. */
    readonly busid?: string;
  }
  | ParseError;

/**
 * A value that is wrong: the key (`type` for the type name) and a message that says what is
 * wrong and what is accepted. The message does not say where the spec came from; the caller
 * adds that (`file:line: device[2].speed: ...`, or the `--device` flag).
 */
export interface ParseError {
  readonly ok: false;
  readonly key: string;
  readonly message: string;
}

/** A device's identity without opening it. */
export interface DeviceDescription {
  readonly descriptors: UsbDescriptors;
  readonly speed: SpeedValue;
  readonly origin: "emulated" | "passthrough";
}

/** A created device and what must be closed with it. */
export interface CreatedDevice {
  device: UsbDevice;
  /** "passthrough" for a real host device; emulated when absent. */
  origin?: "passthrough";
  /** The bus id to export under when the spec's `busid` does not say it (host devices). */
  busid?: string;
  /** Releases back-ends the device uses (sockets, files). */
  close?(): Promise<void>;
}

/** What a create step may need from the gateway. */
export interface CreateContext {
  /** A name for the device's log lines: `gadget-zero 1-1`. */
  readonly label: string;
}

/** A device type. `O` is its typed options. */
export interface DeviceType<O = unknown> {
  readonly name: string;
  /** One line for `serve --help`. */
  readonly summary: string;
  /**
   * Accepted keys besides `busid` (which every type accepts), in the order help and messages
   * list them.
   */
  readonly keys: Readonly<Record<string, KeySpec>>;
  /**
   * Checks every value of `options` and resolves the paths they name; opens nothing and never
   * throws for bad input. What it accepts, create can build, but for facts only known when
   * opening (a missing image without `size`, a locked image, a port in use). It expects the
   * registry's checks done: every key is one of {@linkcode DeviceType.keys} or `busid`, keys
   * given alone are flags, and `busid` has the bus id form.
   */
  parse(options: Readonly<Record<string, string>>, context: ParseContext): ParseResult<O>;
  /**
   * The device's identity and descriptors, without opening anything (no file, socket,
   * back-end or image is opened or created; a host device's sysfs entry is read); `undefined`
   * when it cannot be known yet (a host device that is not plugged in).
   */
  describe(options: O): Promise<DeviceDescription | undefined>;
  /** Opens the back-ends and builds the device; on failure, closes what it opened. */
  create(options: O, context: CreateContext): Promise<CreatedDevice>;
}
