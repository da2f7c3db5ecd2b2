// Tests of device specs and device-type checks.
import { assertEquals, assertThrows } from "@std/assert";
import { checkDeviceSpec, DEVICE_TYPES } from "../../lib/cli/device_types.ts";
import { parseDeviceSpec } from "../../lib/cli/device_spec.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";

Deno.test("parseDeviceSpec() reads TYPE alone and TYPE:key=value,...", () => {
  assertEquals(parseDeviceSpec("gadget-zero").options, {});
  const spec = parseDeviceSpec("keyboard:busid=1-2,text=a=b\\,c");
  assertEquals(spec.type, "keyboard");
  assertEquals(spec.options, { busid: "1-2", text: "a=b,c" });
});

Deno.test("parseDeviceSpec() rejects an empty type and a repeated key; a bare word must be a flag", () => {
  assertThrows(() => parseDeviceSpec(":busid=1-1"), UsageError, "type is empty");
  assertThrows(
    () => checkDeviceSpec(parseDeviceSpec("keyboard:busid")),
    UsageError,
    "not key=value",
  );
  assertThrows(() => parseDeviceSpec("keyboard:text=a,text=b"), UsageError, "text is given twice");
});

Deno.test("parseDeviceSpec() reads a key alone as a flag with an empty value", () => {
  const spec = parseDeviceSpec("storage:image=a.img,ro,removable=0");
  assertEquals(spec.options, { image: "a.img", ro: "", removable: "0" });
  assertEquals(spec.flags, ["ro"]);
  assertEquals(parseDeviceSpec("storage:image=a.img").flags, undefined);
  assertThrows(() => parseDeviceSpec("storage:ro,ro=1"), UsageError, "ro is given twice");
});

Deno.test("checkDeviceSpec() accepts only the flags a type lists alone", () => {
  assertEquals(checkDeviceSpec(parseDeviceSpec("storage:image=a.img,ro")).name, "storage");
  assertThrows(
    () => checkDeviceSpec(parseDeviceSpec("storage:image=a.img,busid")),
    UsageError,
    '"busid" is not key=value; only ro, removable may be given alone',
  );
  assertThrows(
    () => checkDeviceSpec(parseDeviceSpec("gadget-zero:pattern")),
    UsageError,
    '--device gadget-zero:pattern: "pattern" is not key=value',
  );
});

Deno.test("checkDeviceSpec() lists the valid types and keys", () => {
  const types = [...DEVICE_TYPES.keys()].join(", ");
  assertThrows(
    () => checkDeviceSpec(parseDeviceSpec("floppy")),
    UsageError,
    `valid types: ${types}`,
  );
  assertThrows(
    () => checkDeviceSpec(parseDeviceSpec("gadget-zero:patern=1")),
    UsageError,
    'Unknown key "patern" for gadget-zero in --device gadget-zero:patern=1; valid keys: busid, pattern, speed',
  );
});

Deno.test("device types reject bad values with the accepted ones", async () => {
  const type = checkDeviceSpec(parseDeviceSpec("gadget-zero:pattern=2"));
  const e = await (async () => await type.create(parseDeviceSpec("gadget-zero:pattern=2")))().catch(
    (e) => e,
  );
  assertEquals(e instanceof UsageError, true);
  assertEquals(
    e.message,
    'Invalid pattern="2" for gadget-zero in --device gadget-zero:pattern=2: expected 0 or 1',
  );
});
