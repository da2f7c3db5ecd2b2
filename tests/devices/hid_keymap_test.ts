/** Tests of the US layout keymap and boot report encoder (HID Usage Tables §10, HID 1.11 B.1). */

import { assertEquals, assertThrows } from "@std/assert";
import {
  encodeKeyboardReport,
  keyFor,
  KeyUsage,
  Modifier,
  reportsFor,
} from "../../lib/devices/hid_keymap.ts";

const SHIFT = 0x02;

Deno.test("keyFor() maps a..z to usages 0x04..0x1d without modifiers", () => {
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const got = Array.from(letters, (c) => keyFor(c));
  assertEquals(got, Array.from(letters, (_, i) => ({ modifiers: 0, usage: 0x04 + i })));
});

Deno.test("keyFor() maps capitals to the letter's key with left shift", () => {
  assertEquals(keyFor("A"), { modifiers: SHIFT, usage: 0x04 });
  assertEquals(keyFor("H"), { modifiers: SHIFT, usage: 0x0b });
  assertEquals(keyFor("Z"), { modifiers: SHIFT, usage: 0x1d });
  assertEquals(Modifier.LEFT_SHIFT, SHIFT);
});

Deno.test("keyFor() maps 1..9 to 0x1e..0x26, 0 to 0x27 and their shifted symbols", () => {
  const expected: [string, string, number][] = [
    ["1", "!", 0x1e],
    ["2", "@", 0x1f],
    ["3", "#", 0x20],
    ["4", "$", 0x21],
    ["5", "%", 0x22],
    ["6", "^", 0x23],
    ["7", "&", 0x24],
    ["8", "*", 0x25],
    ["9", "(", 0x26],
    ["0", ")", 0x27],
  ];
  for (const [digit, symbol, usage] of expected) {
    assertEquals(keyFor(digit), { modifiers: 0, usage }, digit);
    assertEquals(keyFor(symbol), { modifiers: SHIFT, usage }, symbol);
  }
});

Deno.test("keyFor() maps the US punctuation keys and their shifted symbols", () => {
  const expected: [string, string, number][] = [
    ["-", "_", 0x2d],
    ["=", "+", 0x2e],
    ["[", "{", 0x2f],
    ["]", "}", 0x30],
    ["\\", "|", 0x31],
    [";", ":", 0x33],
    ["'", '"', 0x34],
    ["`", "~", 0x35],
    [",", "<", 0x36],
    [".", ">", 0x37],
    ["/", "?", 0x38],
  ];
  for (const [plain, shifted, usage] of expected) {
    assertEquals(keyFor(plain), { modifiers: 0, usage }, plain);
    assertEquals(keyFor(shifted), { modifiers: SHIFT, usage }, shifted);
  }
});

Deno.test("keyFor() maps space, Enter, Tab, Backspace and Escape", () => {
  assertEquals(keyFor(" "), { modifiers: 0, usage: 0x2c });
  assertEquals(keyFor("\n"), { modifiers: 0, usage: 0x28 });
  assertEquals(keyFor("\t"), { modifiers: 0, usage: 0x2b });
  assertEquals(keyFor("\b"), { modifiers: 0, usage: 0x2a });
  assertEquals(keyFor("\x1b"), { modifiers: 0, usage: 0x29 });
});

Deno.test("keyFor() has no key for carriage return, non-ASCII or multi-character strings", () => {
  for (const s of ["\r", "é", "€", "😀", "", "ab", "\x00", "\x7f"]) {
    assertEquals(keyFor(s), undefined, JSON.stringify(s));
  }
});

Deno.test("keyFor() returns a copy that callers may change", () => {
  const k = keyFor("a")!;
  k.usage = 0x99;
  assertEquals(keyFor("a"), { modifiers: 0, usage: 0x04 });
});

Deno.test("encodeKeyboardReport() lays out modifiers, a reserved byte and six key slots", () => {
  assertEquals(
    encodeKeyboardReport(0x22, [0x04, 0x05, 0x06]),
    new Uint8Array([0x22, 0, 0x04, 0x05, 0x06, 0, 0, 0]),
  );
  assertEquals(encodeKeyboardReport(0, []), new Uint8Array(8));
  assertEquals(
    encodeKeyboardReport(0, [4, 5, 6, 7, 8, 9]),
    new Uint8Array([0, 0, 4, 5, 6, 7, 8, 9]),
  );
});

Deno.test("encodeKeyboardReport() reports ErrorRollOver in every slot for more than six keys", () => {
  assertEquals(
    encodeKeyboardReport(0x01, [4, 5, 6, 7, 8, 9, 10]),
    new Uint8Array([0x01, 0, 1, 1, 1, 1, 1, 1]),
  );
  assertEquals(KeyUsage.ERROR_ROLL_OVER, 0x01);
});

Deno.test("encodeKeyboardReport() rejects values that are not bytes", () => {
  assertThrows(() => encodeKeyboardReport(0x100, []), RangeError, "expected a byte");
  assertThrows(() => encodeKeyboardReport(0, [4, -1]), RangeError, "is -1");
  assertThrows(() => encodeKeyboardReport(0, [1.5]), RangeError);
});

Deno.test("reportsFor() gives a press and an all-released report per character", () => {
  const { reports, unmapped } = reportsFor("aA1");
  assertEquals(reports, [
    new Uint8Array([0, 0, 0x04, 0, 0, 0, 0, 0]),
    new Uint8Array(8),
    new Uint8Array([SHIFT, 0, 0x04, 0, 0, 0, 0, 0]),
    new Uint8Array(8),
    new Uint8Array([0, 0, 0x1e, 0, 0, 0, 0, 0]),
    new Uint8Array(8),
  ]);
  assertEquals(unmapped, []);
});

Deno.test("reportsFor() skips characters with no key and lists each by code point", () => {
  const { reports, unmapped } = reportsFor("a😀b\r\né");
  assertEquals(reports.length, 6);
  assertEquals(reports[2], new Uint8Array([0, 0, 0x05, 0, 0, 0, 0, 0]));
  assertEquals(reports[4], new Uint8Array([0, 0, 0x28, 0, 0, 0, 0, 0]));
  assertEquals(unmapped, ["😀", "\r", "é"]);
});

Deno.test("reportsFor() with capsLock inverts shift for letters only", () => {
  const { reports } = reportsFor("aB!", { capsLock: true });
  assertEquals(reports[0], new Uint8Array([SHIFT, 0, 0x04, 0, 0, 0, 0, 0]));
  assertEquals(reports[2], new Uint8Array([0, 0, 0x05, 0, 0, 0, 0, 0]));
  assertEquals(reports[4], new Uint8Array([SHIFT, 0, 0x1e, 0, 0, 0, 0, 0]));
});

Deno.test("reportsFor() of an empty text has no reports", () => {
  assertEquals(reportsFor(""), { reports: [], unmapped: [] });
});
