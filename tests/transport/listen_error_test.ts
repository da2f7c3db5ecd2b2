// Listeners that cannot open say which address or socket, and why, with a ListenError: an
// occupied port, an address not of this host, a privileged port, a socket folder that is
// missing, read-only or not writable, a path too long. Real sockets, files and mounts; the
// checks root would pass regardless run in a child without root's capabilities.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ListenError } from "../../lib/transport/listen_error.ts";
import { TcpListener } from "../../lib/transport/tcp.ts";
import { UnixListener } from "../../lib/transport/unix.ts";
import {
  foreignSocketProblem,
  noCapsProblem,
  probe,
  readOnlyProblem,
  withForeignSocket,
} from "./_restricted.ts";

Deno.test("a TCP listener on an occupied port names the address and a likely culprit", () => {
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = holder.addr.port;
    const e = assertThrows(() => new TcpListener({ hostname: "127.0.0.1", port }), ListenError);
    assertEquals(
      e.message,
      `Cannot listen on 127.0.0.1:${port}: the address is in use (EADDRINUSE); ` +
        "is another usbipgw or usbipd running?",
    );
    assertEquals([e.failure, e.code, e.address], [
      "address_in_use",
      "EADDRINUSE",
      `127.0.0.1:${port}`,
    ]);
    assertEquals(e.detail, "the address is in use (EADDRINUSE)");
    assert(e.cause instanceof Deno.errors.AddrInUse, "the system's error is the cause");
  } finally {
    holder.close();
  }
});

Deno.test("a TCP listener on an address that is not this host's names it", () => {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): no host has it.
  const e = assertThrows(() => new TcpListener({ hostname: "192.0.2.1", port: 3240 }), ListenError);
  assertEquals(e.failure, "address_not_available");
  assertEquals(
    e.message,
    "Cannot listen on 192.0.2.1:3240: the address is not one of this host's (EADDRNOTAVAIL); " +
      "listen on one of its addresses, or on 0.0.0.0 or [::] for all of them",
  );
  const v6 = assertThrows(
    () => new TcpListener({ hostname: "2001:db8::1", port: 3240 }),
    ListenError,
  );
  assert(v6.message.startsWith("Cannot listen on [2001:db8::1]:3240: "), v6.message);
});

const unprivilegedFrom = Number(
  (await Deno.readTextFile("/proc/sys/net/ipv4/ip_unprivileged_port_start").catch(() => "1024"))
    .trim(),
);
const privilegedProblem = noCapsProblem ??
  (unprivilegedFrom === 0
    ? "net.ipv4.ip_unprivileged_port_start is 0: every port is unprivileged here"
    : undefined);
if (privilegedProblem) console.log(`Skipping the privileged port test: ${privilegedProblem}`);

Deno.test({
  name: "a privileged port without CAP_NET_BIND_SERVICE names the address and what it needs",
  ignore: privilegedProblem !== undefined,
  fn: async () => {
    const port = unprivilegedFrom - 1;
    const r = await probe(["tcp", "127.0.0.1", String(port)], "no-caps");
    assertEquals(r.name, "ListenError");
    assertEquals(r.failure, "permission_denied");
    assertEquals(
      r.message,
      `Cannot listen on 127.0.0.1:${port}: permission denied (EACCES); ` +
        "ports below 1024 need root or CAP_NET_BIND_SERVICE",
    );
  },
});

Deno.test("a unix socket in a missing folder names the folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/run/x/gw.sock`;
    const e = await assertRejects(() => UnixListener.listen({ path }), ListenError);
    assertEquals(
      e.message,
      `Cannot listen on ${path}: the folder ${dir}/run/x does not exist (ENOENT)`,
    );
    assertEquals([e.failure, e.code, e.address], ["folder_missing", "ENOENT", path]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a unix socket under a file names what is wrong with the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/plain`, "");
    const path = `${dir}/plain/gw.sock`;
    const e = await assertRejects(() => UnixListener.listen({ path }), ListenError);
    assertEquals(
      e.message,
      `Cannot listen on ${path}: a part of the path is a file, not a folder (ENOTDIR)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (noCapsProblem) console.log(`Skipping the unwritable folder test: ${noCapsProblem}`);

Deno.test({
  name: "a unix socket in a folder this user cannot write to names the folder",
  ignore: noCapsProblem !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o555);
      const path = `${dir}/gw.sock`;
      const want =
        `Cannot listen on ${path}: permission denied: this user cannot create files in the folder ${dir} (EACCES)`;
      // As root, a child without CAP_DAC_OVERRIDE obeys the mode; any other user here does.
      const r = await probe(["unix", path], "no-caps");
      assertEquals([r.name, r.failure, r.message], ["ListenError", "folder_not_writable", want]);
      if (Deno.uid() !== 0) {
        const e = await assertRejects(() => UnixListener.listen({ path }), ListenError);
        assertEquals(e.message, want);
      }
    } finally {
      await Deno.chmod(dir, 0o700);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (readOnlyProblem) console.log(`Skipping the read-only folder test: ${readOnlyProblem}`);

Deno.test({
  name: "a unix socket in a read-only folder names the folder",
  ignore: readOnlyProblem !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const path = `${dir}/gw.sock`;
      const r = await probe(["unix", path], { readOnly: dir });
      assertEquals(
        [r.name, r.failure, r.code, r.message],
        [
          "ListenError",
          "folder_read_only",
          "EROFS",
          `Cannot listen on ${path}: the folder ${dir} is read-only (EROFS)`,
        ],
      );
      // The mount lived in the child's namespace only: the folder is writable here.
      await Deno.writeTextFile(`${dir}/still-writable`, "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a unix socket path too long for sockaddr_un says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/${"s".repeat(120)}.sock`;
    const e = await assertRejects(() => UnixListener.listen({ path }), ListenError);
    assertEquals(e.failure, "path_too_long");
    assertEquals(
      e.message,
      `Cannot listen on ${path}: the path is longer than a unix socket address holds (107 bytes)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (foreignSocketProblem) console.log(`Skipping the foreign socket test: ${foreignSocketProblem}`);

Deno.test({
  name: "a unix listener leaves a socket it may not probe alone and says why",
  ignore: foreignSocketProblem !== undefined,
  // Another user's live socket, mode 0600: root without CAP_DAC_OVERRIDE cannot connect.
  fn: () =>
    withForeignSocket(async (path) => {
      const r = await probe(["unix", path], "no-caps");
      assertEquals(
        [r.name, r.failure, r.message],
        [
          "ListenError",
          "address_in_use",
          `Cannot listen on ${path}: a socket this user cannot connect to is there (EACCES); ` +
          "it may belong to a running server; remove it if not",
        ],
      );
      assert((await Deno.lstat(path)).isSocket, "the socket is still there");
    }),
});
