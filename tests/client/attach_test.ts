// Tests of attachDevice/detachPort/listAttached against a scripted USB/IP server on real
// sockets and a fake vhci sysfs tree; the attribute writer is wrapped to look at the fd at the
// moment vhci would take it. A server that cannot be reached is a ClientError "connect" with
// the transport's ConnectError.
import { assert, assertEquals, assertRejects } from "@std/assert";
import {
  attachDevice,
  type AttachOptions,
  ClientError,
  detachPort,
  ImportRefusedError,
  listAttached,
  VhciMissingError,
} from "../../lib/client/attach.ts";
import { socketOption } from "../../lib/client/fd_socket.ts";
import { ConnectError } from "../../lib/transport/connect_error.ts";
import { connectTcp } from "../../lib/transport/tcp.ts";
import { connectUnix } from "../../lib/transport/unix.ts";
import { SockOpt } from "../../lib/ffi/sockopt.ts";
import { readPortRecord, writeAttribute } from "../../lib/client/vhci.ts";
import { encodeOpRepImport, type UsbipDeviceRecord } from "../../lib/protocol/op_messages.ts";
import { controllerPorts, type FakePort, fakeSysfs } from "./_vhci_tree.ts";

function device(over: Partial<UsbipDeviceRecord> = {}): UsbipDeviceRecord {
  return {
    path: "/sys/devices/usbipgw/1-1",
    busid: "1-1",
    busnum: 1,
    devnum: 2,
    speed: 3,
    idVendor: 0x0525,
    idProduct: 0xa4a0,
    bcdDevice: 0x0100,
    bDeviceClass: 0xff,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bConfigurationValue: 3,
    bNumConfigurations: 2,
    bNumInterfaces: 1,
    ...over,
  };
}

/** A server that answers one OP_REQ_IMPORT per connection with `reply`, then waits for EOF. */
function scriptedServer(reply: (busid: string) => Uint8Array) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: string[] = [];
  const afterReply: (number | null)[] = [];
  let connections = 0;
  const loop = (async () => {
    for await (const conn of listener) {
      connections++;
      (async () => {
        const req = new Uint8Array(40);
        let off = 0;
        while (off < 40) {
          const n = await conn.read(req.subarray(off));
          if (n === null) return conn.close();
          off += n;
        }
        const busid = new TextDecoder().decode(req.subarray(8)).replace(/\0.*$/s, "");
        requests.push(busid);
        await conn.write(reply(busid));
        // What the client sends next: nothing until the socket is closed (EOF, null).
        afterReply.push(await conn.read(new Uint8Array(64)).catch(() => null));
        conn.close();
      })();
    }
  })();
  return {
    port: listener.addr.port,
    requests,
    afterReply,
    get connections() {
      return connections;
    },
    async close() {
      listener.close();
      await loop.catch(() => {});
    },
  };
}

interface Write {
  path: string;
  text: string;
  isSocket: boolean;
  keepalive: number;
  userTimeout: number;
}

/** The real writer, after noting what the fd in the text is at that moment. */
function watchingWriter(writes: Write[], failFirst?: number) {
  return (path: string, text: string) => {
    const fd = Number(text.split(" ")[1]);
    let isSocket = false;
    let keepalive = -1;
    let userTimeout = -1;
    try {
      isSocket = Deno.readLinkSync(`/proc/self/fd/${fd}`).startsWith("socket:[");
      keepalive = socketOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_KEEPALIVE);
      userTimeout = socketOption(fd, SockOpt.IPPROTO_TCP, SockOpt.TCP_USER_TIMEOUT);
    } catch {
      // A unix socket has no TCP options.
    }
    writes.push({ path, text, isSocket, keepalive, userTimeout });
    if (failFirst !== undefined && writes.length === 1) {
      throw Object.assign(new Error(`Cannot write "${text}" to ${path}: EBUSY`), {
        errno: failFirst,
      });
    }
    writeAttribute(path, text);
  };
}

async function withTree(
  controllers: FakePort[][],
  fn: (tree: Awaited<ReturnType<typeof fakeSysfs>>, state: string) => Promise<void>,
) {
  const tree = await fakeSysfs(controllers);
  try {
    await fn(tree, `${tree.root}/run/vhci_hcd`);
  } finally {
    await tree.remove();
  }
}

Deno.test("attachDevice() imports, then hands vhci the live socket with keep-alive set", async () => {
  const server = scriptedServer(() =>
    encodeOpRepImport({ kind: "op_rep_import", status: 0, device: device() })
  );
  await withTree([controllerPorts(0)], async (tree, state) => {
    const writes: Write[] = [];
    const opts: AttachOptions = {
      remote: { transport: "tcp", host: "127.0.0.1", port: server.port },
      busid: "1-1",
      sysfsRoot: tree.root,
      stateDir: state,
      writeAttribute: watchingWriter(writes),
    };
    const r = await attachDevice(opts);
    assertEquals(server.requests, ["1-1"]);
    assertEquals([r.port, r.hub, r.devid, r.speed], [0, "hs", 0x10002, 3]);
    assertEquals(writes.length, 1);
    assertEquals(writes[0]!.path, `${tree.vhci}/attach`);
    assertEquals(writes[0]!.text, `0 ${r.sockfd} 65538 3`);
    assert(writes[0]!.isSocket, "the fd written is this process's socket");
    assertEquals(writes[0]!.keepalive, 1);
    assertEquals(writes[0]!.userTimeout, 10000);
    assertEquals(tree.read("attach"), `0 ${r.sockfd} 65538 3`);
    assertEquals(await readPortRecord(state, 0), {
      host: "127.0.0.1",
      service: String(server.port),
      busid: "1-1",
    });
    // The client wrote nothing after OP_REQ_IMPORT; its fd is closed after the hand-over.
    for (let i = 0; i < 50 && server.afterReply.length === 0; i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    // EOF: the process's only reference was closed (vhci would hold its own).
    assertEquals(server.afterReply, [null]);
  });
  await server.close();
});

Deno.test("attachDevice() puts a SuperSpeed device on the SS hub and keeps --keepalive 0 plain", async () => {
  const server = scriptedServer(() =>
    encodeOpRepImport({
      kind: "op_rep_import",
      status: 0,
      device: device({ busid: "2-1", speed: 5, busnum: 2, devnum: 1 }),
    })
  );
  await withTree([controllerPorts(0)], async (tree) => {
    const writes: Write[] = [];
    const r = await attachDevice({
      remote: { transport: "tcp", host: "127.0.0.1", port: server.port },
      busid: "2-1",
      sysfsRoot: tree.root,
      stateDir: null,
      deadPeerTimeoutS: 0,
      writeAttribute: watchingWriter(writes),
    });
    assertEquals([r.port, r.hub, r.speed, r.record], [8, "ss", 5, undefined]);
    assertEquals(writes[0]!.keepalive, 1, "SO_KEEPALIVE as the usbip tool");
    assertEquals(writes[0]!.userTimeout, 0, "no user timeout with --keepalive 0");
  });
  await server.close();
});

Deno.test("attachDevice() takes the next free port when another attach got there first (EBUSY)", async () => {
  const server = scriptedServer(() =>
    encodeOpRepImport({ kind: "op_rep_import", status: 0, device: device() })
  );
  await withTree([controllerPorts(0)], async (tree) => {
    const writes: Write[] = [];
    const r = await attachDevice({
      remote: { transport: "tcp", host: "127.0.0.1", port: server.port },
      busid: "1-1",
      sysfsRoot: tree.root,
      stateDir: null,
      writeAttribute: watchingWriter(writes, 16),
    });
    assertEquals(writes.map((w) => w.text.split(" ")[0]), ["0", "1"]);
    assertEquals(r.port, 1);
  });
  await server.close();
});

Deno.test("attachDevice() reports refusals, a wrong busid and a kernel refusal", async () => {
  const statuses = new Map([["busy", 2], ["gone", 4], ["denied", 1]]);
  const server = scriptedServer((busid) =>
    busid === "other"
      ? encodeOpRepImport({ kind: "op_rep_import", status: 0, device: device({ busid: "1-9" }) })
      : encodeOpRepImport({
        kind: "op_rep_import",
        status: statuses.get(busid) ?? 0,
        device: device({ busid }),
      })
  );
  await withTree([controllerPorts(0)], async (tree) => {
    const base = {
      remote: { transport: "tcp" as const, host: "127.0.0.1", port: server.port },
      sysfsRoot: tree.root,
      stateDir: null,
    };
    for (const [busid, status] of statuses) {
      const e = await assertRejects(() => attachDevice({ ...base, busid }), ImportRefusedError);
      assertEquals(e.status, status);
    }
    await assertRejects(
      () => attachDevice({ ...base, busid: "other" }),
      ClientError,
      "the server answered for 1-9",
    );
    assertEquals(tree.read("attach"), "", "nothing reached vhci");
    const e = await assertRejects(
      () =>
        attachDevice({
          ...base,
          busid: "1-1",
          writeAttribute: (p, t) => {
            throw Object.assign(new Error(`Cannot write "${t}" to ${p}: EINVAL`), { errno: 22 });
          },
        }),
      ClientError,
    );
    assertEquals(e.reason, "attach_failed");
    assert(e.message.includes("dmesg"), e.message);
  });
  await server.close();
});

Deno.test("attachDevice() without a free port or without vhci_hcd", async () => {
  const server = scriptedServer(() =>
    encodeOpRepImport({ kind: "op_rep_import", status: 0, device: device() })
  );
  const busy = controllerPorts(0).map((p) =>
    p.hub === "hs" ? { ...p, status: 6, speed: 3, devid: 0x10005, sockfd: 4, busid: "3-1" } : p
  );
  await withTree([busy], async (tree) => {
    const e = await assertRejects(
      () =>
        attachDevice({
          remote: { transport: "tcp", host: "127.0.0.1", port: server.port },
          busid: "1-1",
          sysfsRoot: tree.root,
          stateDir: null,
        }),
      ClientError,
      "no free high-speed port",
    );
    assertEquals(e.reason, "no_free_port");
  });
  const before = server.connections;
  const empty = await Deno.makeTempDir();
  await assertRejects(
    () =>
      attachDevice({
        remote: { transport: "tcp", host: "127.0.0.1", port: server.port },
        busid: "1-1",
        sysfsRoot: empty,
      }),
    VhciMissingError,
  );
  assertEquals(server.connections, before, "no connection without vhci_hcd");
  await Deno.remove(empty);
  await server.close();
});

Deno.test("attachDevice() to a refused server throws ClientError connect with the same ConnectError", async () => {
  const tree = await fakeSysfs([controllerPorts(0)]);
  try {
    // A port nobody listens on: bound, noted and closed again.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const e = await assertRejects(
      () =>
        attachDevice({
          remote: { transport: "tcp", host: "127.0.0.1", port },
          busid: "1-1",
          sysfsRoot: tree.root,
          stateDir: null,
        }),
      ClientError,
    );
    assertEquals(e.reason, "connect");
    assert(e.cause instanceof ConnectError, "the cause is the transport's ConnectError");
    assertEquals(e.cause.failure, "refused");
    assertEquals(
      e.message,
      `Cannot connect to 127.0.0.1:${port}: connection refused (ECONNREFUSED); is the gateway running?`,
    );
    const direct = await assertRejects(() => connectTcp("127.0.0.1", port), ConnectError);
    assertEquals(e.message, direct.message, "both paths word it alike");
    const dir = await Deno.makeTempDir();
    const u = await assertRejects(
      () =>
        attachDevice({
          remote: { transport: "unix", path: `${dir}/gw.sock` },
          busid: "1-1",
          sysfsRoot: tree.root,
          stateDir: null,
        }),
      ClientError,
    );
    await Deno.remove(dir);
    assertEquals(u.message, (await connectUnix(`${dir}/gw.sock`).catch((x) => x)).message);
  } finally {
    await tree.remove();
  }
});

Deno.test("attachDevice() over a unix socket records unix:PATH", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/gw.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    const req = new Uint8Array(40);
    let off = 0;
    while (off < 40) off += (await conn.read(req.subarray(off))) ?? 40;
    await conn.write(
      encodeOpRepImport({
        kind: "op_rep_import",
        status: 0,
        device: device({ busid: "1-2", speed: 2 }),
      }),
    );
    const next = await conn.read(new Uint8Array(8));
    conn.close();
    return next;
  })();
  await withTree([controllerPorts(0)], async (tree, state) => {
    const writes: Write[] = [];
    const r = await attachDevice({
      remote: { transport: "unix", path },
      busid: "1-2",
      sysfsRoot: tree.root,
      stateDir: state,
      writeAttribute: watchingWriter(writes),
    });
    assert(writes[0]!.isSocket);
    assertEquals(writes[0]!.text, `0 ${r.sockfd} 65538 2`);
    assertEquals(await readPortRecord(state, 0), {
      host: `unix:${path}`,
      service: "-",
      busid: "1-2",
    });
  });
  assertEquals(await served, null, "EOF once the client's fd is closed");
  listener.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("detachPort() writes the port, removes its record and waits for the port to be free", async () => {
  const ports = controllerPorts(0);
  ports[2] = { ...ports[2]!, status: 6, speed: 3, devid: 0x10002, sockfd: 5, busid: "3-1" };
  await withTree([ports], async (tree, state) => {
    Deno.mkdirSync(state, { recursive: true });
    Deno.writeTextFileSync(`${state}/port2`, "127.0.0.1 3240 1-1\n");
    // The "kernel" frees the port when the detach is written.
    const r = await detachPort(2, {
      sysfsRoot: tree.root,
      stateDir: state,
      writeAttribute: (p, t) => {
        writeAttribute(p, t);
        tree.setStatus(0, controllerPorts(0));
      },
    });
    assertEquals(r, { freed: true });
    assertEquals(tree.read("detach"), "2");
    assertEquals(await readPortRecord(state, 2), undefined);
    // Free port, unknown port.
    const free = await assertRejects(
      () => detachPort(2, { sysfsRoot: tree.root, stateDir: null }),
      ClientError,
    );
    assertEquals(free.reason, "port_free");
    const none = await assertRejects(
      () => detachPort(99, { sysfsRoot: tree.root, stateDir: null }),
      ClientError,
    );
    assertEquals(none.reason, "no_such_port");
    assert(none.message.includes("ports 0 to 15"), none.message);
    // A port that stays busy: the write happened, freed is false after the wait.
    tree.setStatus(0, ports);
    const slow = await detachPort(2, { sysfsRoot: tree.root, stateDir: null, waitMs: 200 });
    assertEquals(slow, { freed: false });
  });
});

Deno.test("listAttached() joins vhci's status, the records and the local device's ids", async () => {
  const c0 = controllerPorts(0);
  c0[0] = { ...c0[0]!, status: 6, speed: 3, devid: 0x10002, sockfd: 3, busid: "3-1" };
  c0[9] = { ...c0[9]!, status: 5 };
  await withTree([c0, controllerPorts(1)], async (tree, state) => {
    const dev = `${tree.root}/bus/usb/devices/3-1`;
    Deno.mkdirSync(dev, { recursive: true });
    Deno.writeTextFileSync(`${dev}/idVendor`, "0525\n");
    Deno.writeTextFileSync(`${dev}/idProduct`, "a4a0\n");
    Deno.writeTextFileSync(`${dev}/product`, "Gadget Zero\n");
    Deno.mkdirSync(state, { recursive: true });
    Deno.writeTextFileSync(`${state}/port0`, "127.0.0.1 3240 1-1\n");
    const list = await listAttached({ sysfsRoot: tree.root, stateDir: state });
    assertEquals(list.map((p) => [p.port, p.hub, p.status]), [[0, "hs", 6], [9, "ss", 5]]);
    assertEquals(list[0]!.idVendor, 0x0525);
    assertEquals(list[0]!.idProduct, 0xa4a0);
    assertEquals(list[0]!.product, "Gadget Zero");
    assertEquals(list[0]!.record, { host: "127.0.0.1", service: "3240", busid: "1-1" });
    assertEquals(list[1]!.record, undefined);
  });
});
