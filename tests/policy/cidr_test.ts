// Tests of CIDR parsing and matching.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  ALL_ADDRESSES,
  cidrContains,
  parseAddress,
  parseCidr,
  prefixCovers,
  prefixesOverlap,
  subtractPrefix,
} from "../../lib/policy/cidr.ts";

Deno.test("parseAddress() reads IPv4, IPv6 and IPv4-mapped IPv6 into the same form", () => {
  assertEquals(parseAddress("10.1.2.3"), parseAddress("::ffff:10.1.2.3"));
  assertEquals([...parseAddress("::1")!], [...new Array(15).fill(0), 1]);
  assertEquals(parseAddress("2001:db8::8:800:200c:417a")?.[15], 0x7a);
  for (const bad of ["1.2.3", "256.1.1.1", "1::2::3", "12345::", "x.y.z.w", ""]) {
    assertEquals(parseAddress(bad), undefined, bad);
  }
});

Deno.test("cidrContains() matches IPv4 and IPv6 prefixes bit by bit", () => {
  const lan = parseCidr("192.168.1.0/24");
  assert(cidrContains(lan, "192.168.1.255"));
  assert(!cidrContains(lan, "192.168.2.1"));
  assert(cidrContains(lan, "::ffff:192.168.1.9"), "IPv4-mapped peers match IPv4 prefixes");
  const odd = parseCidr("10.0.0.0/9");
  assert(cidrContains(odd, "10.127.255.255"));
  assert(!cidrContains(odd, "10.128.0.0"));
  const loop6 = parseCidr("::1");
  assert(cidrContains(loop6, "::1") && !cidrContains(loop6, "::2"));
  const ula = parseCidr("fd00::/8");
  assert(cidrContains(ula, "fd12:3456::1") && !cidrContains(ula, "fe80::1"));
  assert(cidrContains(parseCidr("0.0.0.0/0"), "203.0.113.5"));
});

Deno.test("parseCidr() rejects malformed prefixes", () => {
  for (const bad of ["10.0.0.0/33", "::/129", "10.0.0.0/x", "10.0.0.0/8/1", "host"]) {
    assertThrows(() => parseCidr(bad), TypeError, "Invalid address prefix", bad);
  }
});

Deno.test("subtractPrefix() leaves exactly the addresses outside the cut, as prefixes", () => {
  const net = parseCidr("10.0.0.0/8");
  const rest = subtractPrefix([net], parseCidr("10.1.0.0/16"));
  assertEquals(rest.map((p) => p.bits - 96), [9, 10, 11, 12, 13, 14, 15, 16]);
  const inRest = (address: string) => rest.some((p) => prefixCovers(p, parseCidr(address)));
  for (const a of ["10.0.0.1", "10.2.0.0", "10.128.0.1", "10.255.255.255", "10.0.255.255"]) {
    assertEquals(inRest(a), true, a);
  }
  for (const a of ["10.1.0.0", "10.1.255.255", "11.0.0.0", "::1"]) {
    assertEquals(inRest(a), false, a);
  }
  // Prefixes do not overlap each other.
  for (const [i, a] of rest.entries()) {
    for (const b of rest.slice(i + 1)) assertEquals(prefixesOverlap(a, b), false);
  }
  assertEquals(subtractPrefix([net], parseCidr("0.0.0.0/0")), [], "a larger cut takes all");
  assertEquals(subtractPrefix([net], parseCidr("192.0.2.0/24")), [net], "a disjoint cut none");
  assertEquals(subtractPrefix([ALL_ADDRESSES], parseCidr("::/0")), []);
});

Deno.test("prefixCovers() and prefixesOverlap() treat IPv4 as mapped into IPv6", () => {
  assertEquals(prefixCovers(ALL_ADDRESSES, parseCidr("192.0.2.0/24")), true);
  assertEquals(prefixCovers(parseCidr("::ffff:0:0/96"), parseCidr("0.0.0.0/0")), true);
  assertEquals(prefixCovers(parseCidr("0.0.0.0/0"), parseCidr("::ffff:0:0/96")), true);
  assertEquals(prefixCovers(parseCidr("0.0.0.0/0"), parseCidr("2001:db8::/32")), false);
  assertEquals(prefixesOverlap(parseCidr("10.0.0.0/8"), parseCidr("10.9.0.0/16")), true);
  assertEquals(prefixesOverlap(parseCidr("10.9.0.0/16"), parseCidr("10.0.0.0/8")), true);
  assertEquals(prefixesOverlap(parseCidr("10.0.0.0/8"), parseCidr("11.0.0.0/8")), false);
});
