// `usbipgw tunnel` between the stock usbip tool and the gateway's TLS listener, all real
// processes: `usbip list` through the tunnel lists the devices the rules give the tunnel's
// certificate; a certificate the gateway refuses gets an empty answer and an audit line; the
// tunnel refuses to listen beyond loopback; SIGTERM ends it with 0.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { makeTestPki, opensslProblem, type TestPki, tlsServeFlags } from "../transport/_certs.ts";
import { type MainProcess, runMain, spawnMain, startTlsGateway } from "./_gateway.ts";

const usbip = (() => {
  for (const p of ["/usr/sbin/usbip", "/usr/bin/usbip"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not here
    }
  }
  return undefined;
})();
const skip = opensslProblem ?? (usbip ? undefined : "the usbip tool is not installed");
if (skip) console.log(`tunnel_test: ignored: ${skip}`);

function tlsGateway(pki: TestPki): Promise<{ gw: MainProcess; port: number }> {
  return startTlsGateway(tlsServeFlags(pki), [
    "--device",
    "gadget-zero:busid=1-1",
    "--device",
    "keyboard:busid=1-2",
    "--rule",
    "allow:transport=tls,cn=alice,busid=1-1",
  ]);
}

/** Starts `tunnel` to the gateway as `client`; resolves with its process and plain port. */
async function tunnel(pki: TestPki, gwPort: number, client: { cert: string; key: string }) {
  const t = spawnMain([
    "tunnel",
    "--listen",
    "127.0.0.1:0",
    "--connect",
    `localhost:${gwPort}`,
    "--cert",
    client.cert,
    "--key",
    client.key,
    "--ca",
    pki.ca,
  ]);
  const line = await t.waitFor(/Tunnel from/);
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(line)?.[1]);
  assert(port > 0, line);
  return { t, port };
}

async function usbipList(port: number): Promise<{ code: number; out: string }> {
  const r = await new Deno.Command(usbip!, {
    args: ["--tcp-port", String(port), "list", "-r", "127.0.0.1"],
    stdin: "null",
  }).output();
  const td = new TextDecoder();
  return { code: r.code, out: td.decode(r.stdout) + td.decode(r.stderr) };
}

Deno.test({
  name: "usbip list through usbipgw tunnel sees what the rules give the tunnel's certificate",
  ignore: skip !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const pki = await makeTestPki();
    const { gw, port } = await tlsGateway(pki);
    const alice = await tunnel(pki, port, pki.alice);
    const stranger = await tunnel(pki, port, pki.stranger);
    try {
      const listed = await usbipList(alice.port);
      assertEquals(listed.code, 0, listed.out);
      assertMatch(listed.out, /1-1: .*\(0525:a4a0\)/);
      assert(!/1-2:/.test(listed.out), `1-2 is not alice's: ${listed.out}`);
      await alice.t.waitFor(/tunnelled to localhost:\d+ over TLS/);
      await gw.waitFor(/cn=alice|alice/);
      // The gateway refuses the stranger's certificate: usbip gets no answer, the tunnel logs it.
      const refused = await usbipList(stranger.port);
      assert(refused.code !== 0, refused.out);
      await gw.waitFor(/unable to verify|mallory/i, 5000);
    } finally {
      assertEquals((await alice.t.stop("SIGTERM")).code, 0);
      await stranger.t.stop("SIGTERM");
      await gw.stop();
      await pki.remove();
    }
  },
});

Deno.test({
  name: "tunnel refuses an address beyond loopback, and asks for the TLS files",
  ignore: opensslProblem !== undefined,
  async fn() {
    const wide = await runMain([
      "tunnel",
      "--listen",
      "0.0.0.0:3240",
      "--connect",
      "gw.example",
      "--cert",
      "c.pem",
      "--key",
      "k.pem",
      "--ca",
      "ca.pem",
    ]);
    assertEquals(wide.code, 2, wide.stderr);
    assertStringIncludes(wide.stderr, "loopback only");
    const bare = await runMain(["tunnel", "--connect", "gw.example"]);
    assertEquals(bare.code, 2, bare.stderr);
    assertStringIncludes(bare.stderr, "needs --cert, --key, --ca");
    const noFile = await runMain([
      "tunnel",
      "--listen",
      "127.0.0.1:0",
      "--connect",
      "gw.example",
      "--cert",
      "/nonexistent/c.pem",
      "--key",
      "k.pem",
      "--ca",
      "ca.pem",
    ]);
    assertEquals(noFile.code, 1, noFile.stderr);
    assertStringIncludes(noFile.stderr, "/nonexistent/c.pem");
  },
});
