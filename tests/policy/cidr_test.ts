// Tests of CIDR parsing and matching.
import { assert, assertEquals, assertThrows } from "@std/assert";
import { cidrContains, parseAddress, parseCidr } from "../../lib/policy/cidr.ts";

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
