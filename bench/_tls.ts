// USB/IP over TLS against plain TCP, both on one gateway process in the same run: Gadget Zero
// bulk IN through the gateway's TLS listener (mutual TLS, a client certificate from a test PKI
// that openssl makes) and through its TCP listener, measured alternately by one client loop.
// The TLS client is Deno.connectTls, the fastest TLS client Deno has (rustls).
import {
  connectTo,
  freePort,
  importGadgetZero,
  startGateway,
  urbRequest,
  waitForSocket,
} from "./_common.ts";
import { drive } from "./_urb.ts";
import { num, ratio, type Row } from "./_table.ts";
import { makeTestPki, opensslProblem, tlsServeFlags } from "../tests/transport/_certs.ts";

const CASES = [
  { name: "64 B bulk IN", size: 64, depth: 1 },
  { name: "64 KiB bulk IN", size: 65536, depth: 1 },
  { name: "64 KiB bulk IN", size: 65536, depth: 8 },
];

/** TLS beside TCP on the same gateway; two rows per case. No rows, with a reason, without openssl. */
export async function tlsSection(dir: string): Promise<Row[]> {
  if (opensslProblem !== undefined) {
    console.error(`bench: tls skipped: ${opensslProblem}`);
    return [];
  }
  const pki = await makeTestPki();
  const tlsPort = freePort();
  const gateway = await startGateway(dir, 1, undefined, [
    ...tlsServeFlags(pki, `127.0.0.1:${tlsPort}`),
    "--rule",
    "allow:transport=tls,cn=alice",
  ]);
  const [ca, cert, key] = [pki.ca, pki.alice.cert, pki.alice.key].map((f) =>
    Deno.readTextFileSync(f)
  );
  const connectTls = async () =>
    await Deno.connectTls({ hostname: "127.0.0.1", port: tlsPort, caCerts: [ca!], cert, key });
  const rate = async (connect: () => Promise<Deno.Conn>, c: (typeof CASES)[number]) => {
    // The previous case's session may still be letting the device go (ST_DEV_BUSY, 2).
    for (let attempt = 1;; attempt++) {
      const conn = await connect();
      try {
        const devid = await importGadgetZero(conn, "1-1");
        return await drive(conn, urbRequest(devid, true, c.size), c.depth);
      } catch (e) {
        if (attempt >= 100 || !/status 2$/.test(String((e as Error).message))) throw e;
      } finally {
        conn.close();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const rows: Row[] = [];
  try {
    await waitForSocket(connectTls);
    for (const c of CASES) {
      const t = await rate(connectTls, c);
      const p = await rate(() => connectTo(gateway, "tcp"), c);
      const label = `${c.name}, ${c.depth} in flight`;
      const small = c.size < 1024;
      rows.push({
        section: "TLS",
        transport: "tls vs tcp",
        figure: `${label}: URB/s`,
        usbipgw: num(t),
        baseline: num(p),
        ratio: ratio(t, p),
        target: "",
      });
      if (small) continue;
      const mb = (r: number) => r * c.size / 1e6;
      rows.push({
        section: "TLS",
        transport: "tls vs tcp",
        figure: `${label}: MB/s`,
        usbipgw: num(mb(t)),
        baseline: num(mb(p)),
        ratio: ratio(t, p),
        target: "",
      });
    }
  } finally {
    await gateway.stop();
    await pki.remove();
  }
  return rows;
}
