// USB/IP over TLS through the real gateway process: a client with a certificate the rules allow
// lists and imports, one they do not allow sees nothing, one of another CA is refused with an
// audit line; the status names the certificate.
import { assertEquals, assertStringIncludes } from "@std/assert";
import * as tls from "node:tls";
import { decodeOpRepDevlist, encodeOpReqDevlist } from "../../lib/protocol/op_messages.ts";
import { makeTestPki, opensslProblem, type TestPki, tlsServeFlags } from "../transport/_certs.ts";
import { runMain, startTlsGateway, tempDir } from "./_gateway.ts";

if (opensslProblem) console.log(`tls_test: ignored: ${opensslProblem}`);

/** Sends `request` over mutual TLS as `client`; resolves with every byte until the close. */
function exchange(
  port: number,
  pki: TestPki,
  client: { cert: string; key: string },
  request: Uint8Array,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const sock = tls.connect({
      host: "127.0.0.1",
      port,
      ca: Deno.readTextFileSync(pki.ca),
      cert: Deno.readTextFileSync(client.cert),
      key: Deno.readTextFileSync(client.key),
      servername: "localhost",
    }, () => sock.write(request));
    sock.on("data", (b: Uint8Array) => chunks.push(new Uint8Array(b)));
    sock.on("error", () => resolve(new Uint8Array(0)));
    sock.on("close", () => {
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      resolve(all);
    });
    setTimeout(() => reject(new Error("no close within 5 s")), 5000);
  });
}

Deno.test({
  name: "a TLS listener lets in the certificates the rules name, and names them in the audit",
  ignore: opensslProblem !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const pki = await makeTestPki();
    const dir = await tempDir();
    const sock = `${dir.path}/gw.sock`;
    const { gw, port } = await startTlsGateway(tlsServeFlags(pki), [
      "--unix",
      sock,
      "--device",
      "gadget-zero",
      "--rule",
      "allow:transport=tls,cn=alice",
    ]);
    try {
      const list = (client: { cert: string; key: string }) =>
        exchange(port, pki, client, encodeOpReqDevlist()).then((b) =>
          b.length === 0 ? undefined : decodeOpRepDevlist(b)
        );
      // alice: the rule names her; the device is listed.
      const forAlice = await list(pki.alice);
      assertEquals(forAlice?.devices.map((d) => d.busid), ["1-1"]);
      // The client of another CA: refused before any USB/IP byte, with the reason audited.
      assertEquals(await list(pki.stranger), undefined);
      const refused = await gw.waitFor(/Refused TLS client 127\.0\.0\.1:\d+ cn=mallory fp=/);
      // The listener as it is bound, not as configured (port 0).
      assertStringIncludes(refused, `on tls 127.0.0.1:${port}: `);
      // The expired one: refused, and the audit says why.
      assertEquals(await list(pki.expired), undefined);
      const expired = await gw.waitFor(/Refused TLS client .*expired/);
      assertStringIncludes(expired, "cn=bob");
      // Identity in the session's audit lines.
      const seen = await gw.waitFor(/connection from tls 127\.0\.0\.1:\d+ cn=alice fp=[0-9a-f]{8}/);
      assertStringIncludes(seen, "cn=alice");
      // The status over the unix socket names the certificate too (the list ended: no session).
      const status = await runMain(["status", "--unix", sock]);
      assertEquals(status.code, 0, status.stderr);
      assertStringIncludes(status.stdout, "tls 127.0.0.1:");
    } finally {
      await gw.stop();
      await dir.remove();
      await pki.remove();
    }
  },
});
