// Shared checks of the device-type tests: parse a spec through the registry, and compare what
// describe says with the device create builds.
import { assert, assertEquals } from "@std/assert";
import {
  createDevice,
  describeDevice,
  type DeviceTypeName,
  type ParsedDevice,
  type ParsedDeviceOf,
  parseDevice,
  PATHS_AS_GIVEN,
  pathsRelativeTo,
} from "../../../lib/devices/registry.ts";
import type { ParseContext } from "../../../lib/devices/device_type.ts";

/** Parses `options` of `type` and asserts that it is valid. */
export function parsed<N extends DeviceTypeName>(
  type: N,
  options: Record<string, string>,
  context: ParseContext = PATHS_AS_GIVEN,
  alone: string[] = [],
): ParsedDeviceOf<N> {
  const r = parseDevice(type, options, alone, context);
  assert(r.ok, r.ok ? "" : `${type} ${JSON.stringify(options)}: ${r.key}: ${r.message}`);
  assertEquals(r.name, type);
  return r;
}

/**
 * Parses `type` with each value of `key` in `cases`, in the context of folder `folder`, and
 * asserts that option `key` comes out as the one given with it.
 */
export function assertParsedIn<N extends DeviceTypeName>(
  folder: string,
  type: N,
  key: keyof ParsedDeviceOf<N>["options"] & string,
  cases: [string, unknown][],
): void {
  const context = pathsRelativeTo(folder);
  for (const [value, expected] of cases) {
    const options = parsed(type, { [key]: value }, context).options as Record<string, unknown>;
    assertEquals(options[key], expected, value);
  }
}

/**
 * Describes `device`, then creates it, and asserts that the descriptor tree and the speed
 * described are the created device's; closes the device.
 */
export async function assertDescribedAsCreated(device: ParsedDevice): Promise<void> {
  const described = await describeDevice(device);
  assert(described !== undefined);
  assertEquals(described.origin, "emulated");
  const made = await createDevice(device, { label: `${device.name} test` });
  try {
    const tree = made.device.descriptors.tree;
    assertEquals(described.descriptors.device, tree.device);
    assertEquals(described.descriptors.configurations, tree.configurations);
    assertEquals(described.descriptors, tree);
    assertEquals(described.speed, made.device.speed);
  } finally {
    await made.close?.();
  }
}

/**
 * Asserts describe against create for `type` with `options` and a `socket` key in a temporary
 * folder; closing the created device removes its socket again.
 */
export async function assertDescribedAsCreatedWithSocket(
  type: DeviceTypeName,
  options: Record<string, string> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await assertDescribedAsCreated(parsed(type, { ...options, socket: `${dir}/input.sock` }));
    assertEquals(await listFolder(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The names in `folder`, sorted. */
export async function listFolder(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(folder)) names.push(e.name);
  return names.sort();
}
