// attach --tls against the real gateway process with a TLS listener and Gadget Zero, vhci played
// by a fake sysfs tree whose attribute writer keeps a duplicate of the fd it is given (as vhci
// holds the socket): URBs go through the relay and the TLS connection to the device and back;
// either side ending ends the relay; a server certificate of another CA, or a client
// certificate the server refuses, ends the attach before any vhci port is written.
import { assertEquals, assertMatch, assertRejects } from "@std/assert";
import { attachDevice, type AttachOptions, ClientError } from "../../lib/client/attach.ts";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { dupFd } from "../../lib/ffi/fd.ts";
import { ktlsUnavailableReason } from "../../lib/ffi/libssl.ts";
import { writeAttribute } from "../../lib/client/vhci.ts";
import {
  decodeRetSubmitBody,
  decodeRetSubmitHeader,
  encodeCmdSubmit,
  retSubmitBodyLength,
} from "../../lib/protocol/urb_messages.ts";
import {
  DescriptorType,
  encodeSetupPacket,
  Request,
  RequestType,
  TransferFlags,
} from "../../mod.ts";
import { Direction } from "../../protocol.ts";
import { makeTestPki, opensslProblem, type TestPki, tlsServeFlags } from "../transport/_certs.ts";
import { startTlsGateway } from "../e2e/_gateway.ts";
import { controllerPorts, fakeSysfs } from "./_vhci_tree.ts";

const ignore = opensslProblem !== undefined;
if (ignore) console.log(`Skipping the attach --tls tests: ${opensslProblem}`);

/** The gateway with a TLS listener, Gadget Zero, and a rule for alice. */
function tlsGateway(pki: TestPki) {
  return startTlsGateway(tlsServeFlags(pki), [
    "--device",
    "gadget-zero:busid=1-1",
    "--rule",
    "allow:transport=tls,cn=alice",
  ]);
}

/** A fake vhci whose writer keeps its own reference to each socket it is given. */
async function fakeVhci() {
  const tree = await fakeSysfs([controllerPorts(1)]);
  const held: FdSocket[] = [];
  const writes: string[] = [];
  return {
    tree,
    held,
    writes,
    writer: (path: string, text: string) => {
      writes.push(text);
      writeAttribute(path, text);
      const fd = dupFd(Number(text.split(" ")[1]));
      held.push(FdSocket.adopt(fd, { transport: "unix", path: "fake vhci" }));
    },
    async remove() {
      for (const h of held) h.close();
      await tree.remove();
    },
  };
}

/** GET_DESCRIPTOR(DEVICE) through `sock` as vhci sends it; returns the descriptor. */
async function deviceDescriptor(sock: FdSocket): Promise<Uint8Array> {
  await sock.writeAll(
    encodeCmdSubmit({
      kind: "cmd_submit",
      seqnum: 1,
      devid: 0x10002,
      direction: Direction.USBIP_DIR_IN,
      ep: 0,
      transferFlags: TransferFlags.URB_DIR_IN,
      transferBufferLength: 18,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup: encodeSetupPacket({
        bmRequestType: RequestType.DIR_IN,
        bRequest: Request.GET_DESCRIPTOR,
        wValue: DescriptorType.DEVICE << 8,
        wIndex: 0,
        wLength: 18,
      }),
      data: new Uint8Array(0),
      isoPackets: [],
    }),
    { timeoutMs: 5000 },
  );
  const header = await sock.readExactly(48, { timeoutMs: 5000 });
  const h = decodeRetSubmitHeader(header);
  const urb = { dirIn: true, isochronous: false, transferBufferLength: 18 };
  const body = await sock.readExactly(retSubmitBodyLength(h, urb), { timeoutMs: 5000 });
  const ret = decodeRetSubmitBody(h, body, urb);
  assertEquals([ret.seqnum, ret.status], [1, 0]);
  return ret.data;
}

function options(
  pki: TestPki,
  port: number,
  vhci: Awaited<ReturnType<typeof fakeVhci>>,
  mode: "auto" | "ktls" | "relay",
  client = pki.alice,
): AttachOptions {
  return {
    remote: { transport: "tcp", host: "127.0.0.1", port },
    busid: "1-1",
    sysfsRoot: vhci.tree.root,
    stateDir: null,
    writeAttribute: vhci.writer,
    timeoutMs: 5000,
    tls: { mode, certFile: client.cert, keyFile: client.key, caFile: pki.ca },
  };
}

const test = (name: string, fn: (pki: TestPki) => Promise<void>) =>
  Deno.test({
    name,
    ignore,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const pki = await makeTestPki();
      try {
        await fn(pki);
      } finally {
        await pki.remove();
      }
    },
  });

test("attach --tls --relay: URBs reach Gadget Zero through the relay; vhci's close ends it", async (pki) => {
  const { gw, port } = await tlsGateway(pki);
  const vhci = await fakeVhci();
  try {
    const r = await attachDevice(options(pki, port, vhci, "relay"));
    assertEquals(r.channel, "relay");
    assertEquals(r.device.idVendor, 0x0525);
    assertEquals(vhci.writes.length, 1);
    const descriptor = await deviceDescriptor(vhci.held[0]!);
    assertEquals([descriptor[1], descriptor[8], descriptor[9]], [1, 0x25, 0x05]);
    // vhci frees the port: its socket closes, the relay ends on the kernel's side.
    vhci.held.shift()!.close();
    assertEquals(await r.relay!.ended, { by: "kernel" });
    await gw.waitFor(/ended|closed/i, 5000);
  } finally {
    await vhci.remove();
    await gw.stop();
  }
});

test("attach --tls: the server going away ends the relay, and vhci reads the end", async (pki) => {
  const { gw, port } = await tlsGateway(pki);
  const vhci = await fakeVhci();
  try {
    const r = await attachDevice(options(pki, port, vhci, "relay"));
    await gw.stop("SIGKILL");
    const end = await r.relay!.ended;
    assertEquals(end.by, "server");
    await assertRejects(
      () => vhci.held[0]!.readExactly(1, { timeoutMs: 5000 }),
      Deno.errors.UnexpectedEof,
    );
  } finally {
    await vhci.remove();
    await gw.stop().catch(() => {});
  }
});

test("attach --tls: kernel TLS where this kernel has it, else the relay; --require-ktls refuses", async (pki) => {
  const { gw, port } = await tlsGateway(pki);
  const vhci = await fakeVhci();
  try {
    const unavailable = ktlsUnavailableReason();
    const r = await attachDevice(options(pki, port, vhci, "auto"));
    // Through whichever way it took, the device answers.
    const descriptor = await deviceDescriptor(vhci.held[0]!);
    assertEquals(descriptor[1], 1);
    if (unavailable === undefined) {
      assertEquals(r.channel, "ktls");
      assertEquals(r.relay, undefined);
    } else {
      console.log(`kernel TLS not tested here: ${unavailable}`);
      assertEquals(r.channel, "relay");
      r.relay!.stop();
      const e = await assertRejects(
        () => attachDevice(options(pki, port, vhci, "ktls")),
        ClientError,
        "kernel TLS",
      );
      assertEquals(e.reason, "tls");
      assertEquals(vhci.writes.length, 1, "no port written for the refused attach");
    }
  } finally {
    await vhci.remove();
    await gw.stop();
  }
});

test("attach --tls: a server certificate of another CA, or a client certificate the server refuses, uses no port", async (pki) => {
  const { gw, port } = await tlsGateway(pki);
  const vhci = await fakeVhci();
  try {
    for (const mode of ["relay", "auto"] as const) {
      const otherCa = { ...options(pki, port, vhci, mode) };
      otherCa.tls = { ...otherCa.tls!, caFile: pki.otherCa };
      const e = await assertRejects(() => attachDevice(otherCa), ClientError);
      assertEquals(e.reason, "tls");
      assertMatch(e.message, /certificate/);
      const stranger = options(pki, port, vhci, mode, pki.stranger);
      const refused = await assertRejects(() => attachDevice(stranger), ClientError);
      assertEquals(refused.reason, "tls", refused.message);
    }
    assertEquals(vhci.writes, []);
    await gw.waitFor(/mallory|unable to verify|another CA|refused/i, 5000);
  } finally {
    await vhci.remove();
    await gw.stop();
  }
});
