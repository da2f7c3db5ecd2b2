import { errorMessage } from "../../lib/util/error_message.ts";
// A throwaway test PKI made with the real openssl(1) CLI in a temporary folder: a CA, two server
// certificates for 127.0.0.1 and localhost, clients of that CA (one current, one expired, one
// with an awkward subject and names), a client of another CA and a self-signed client to pin.
// Keys are P-256 (quick to make). The expired certificate is made with `openssl ca -startdate
// -enddate`, which alone in OpenSSL 3.0 takes dates in the past (x509 -not_before came in 3.4).
// Nothing is kept outside the folder; `remove()` deletes it.

/** A certificate and its key, as PEM file paths. */
export interface CertFiles {
  cert: string;
  key: string;
}

/** The files of a test PKI; every path is inside `dir`. */
export interface TestPki {
  dir: string;
  /** The CA that signs the server and the good clients. */
  ca: string;
  /** A CA that the listener does not trust. */
  otherCa: string;
  /** For 127.0.0.1 and localhost (SAN IP:127.0.0.1, DNS:localhost), signed by `ca`. */
  server: CertFiles;
  /** A second server certificate (CN server2, same SANs), for reload tests. */
  server2: CertFiles;
  /** CN alice, OU lab, SANs DNS, URI and IP, signed by `ca`. */
  alice: CertFiles;
  /** CN mallory, signed by `otherCa`. */
  stranger: CertFiles;
  /** CN bob, signed by `ca`, valid from 2020-01-01 to 2020-01-02 only. */
  expired: CertFiles;
  /** CN pinned, self-signed: trusted only when listed in `ca` itself. */
  pinned: CertFiles;
  /** `ca` followed by `pinned`: a CA file that pins the self-signed client. */
  caAndPinned: string;
  /**
   * Signed by `ca`: two CNs (one and two), OUs lab and usb, O "Org, Inc.", and the SANs
   * {@linkcode TRICKY_SANS}, the first of which holds `, DNS:evil`.
   */
  tricky: CertFiles;
  /** Deletes the folder. */
  remove(): Promise<void>;
}

/** The SANs of alice's certificate, in the order openssl writes them. */
export const ALICE_SANS = [
  "DNS:alice.lab.example",
  "URI:spiffe://lab.example/alice",
  "IP Address:192.0.2.7",
] as const;

/** The SANs of the tricky certificate, one entry per name, as a certificate reader should give. */
export const TRICKY_SANS = [
  "URI:spiffe://x/a, DNS:evil",
  "DNS:plain.example",
  "email:a@b.example",
  "IP Address:2001:db8::1",
] as const;

const CONFIG = `# Written by tests/transport/_certs.ts; used only in this folder.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[alice]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:alice.lab.example, URI:spiffe://lab.example/alice, IP:192.0.2.7
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[tricky]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = @tricky_names
[tricky_names]
URI.1 = spiffe://x/a, DNS:evil
DNS.1 = plain.example
email.1 = a@b.example
IP.1 = 2001:db8::1

[pinned]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash

# For "openssl ca", which alone in OpenSSL 3.0 takes a start date in the past.
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
serial = serial
new_certs_dir = .
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
x509_extensions = client
[any_name]
commonName = supplied
organizationalUnitName = optional
`;

/** Runs openssl in `dir` with `stdin`; its output, or an error with what it printed. */
async function run(dir: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command("openssl", {
    args,
    cwd: dir,
    env: { OPENSSL_CONF: `${dir}/openssl.cnf` },
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`openssl ${args.join(" ")} failed: ${why}`);
  }
  return out.stdout;
}

/** Runs openssl in `dir`; its output as text. */
export async function openssl(dir: string, args: string[], stdin?: Uint8Array): Promise<string> {
  return new TextDecoder().decode(await run(dir, args, stdin));
}

/** Why openssl(1) cannot be used here, or `undefined` when it can. */
export const opensslProblem: string | undefined = await (async () => {
  try {
    const out = await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output();
    return out.success ? undefined : "openssl version failed";
  } catch (e) {
    return `openssl(1) is not available: ${errorMessage(e)}`;
  }
})();

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes the whole test PKI in a new temporary folder. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-tls-" });
  const remove = () => Deno.remove(dir, { recursive: true });
  try {
    await Deno.writeTextFile(`${dir}/openssl.cnf`, CONFIG);
    await Deno.writeTextFile(`${dir}/index.txt`, "");
    await Deno.writeTextFile(`${dir}/serial`, "1000\n");
    const ssl = (args: string[]) => openssl(dir, args);
    const selfSigned = (name: string, subject: string, ext: string) =>
      ssl([
        "req",
        "-x509",
        ...EC,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "30",
        "-subj",
        subject,
        "-extensions",
        ext,
      ]);
    const request = (name: string, subject: string) =>
      ssl([
        "req",
        "-new",
        ...EC,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        "-subj",
        subject,
      ]);
    const signed = async (name: string, subject: string, ca: string, ext: string) => {
      await request(name, subject);
      await ssl([
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${ca}.pem`,
        "-CAkey",
        `${ca}.key`,
        "-CAcreateserial",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "openssl.cnf",
        "-extensions",
        ext,
        "-out",
        `${name}.pem`,
      ]);
    };
    await selfSigned("ca", "/CN=usbipgw test CA", "v3_ca");
    await selfSigned("other-ca", "/CN=another test CA", "v3_ca");
    await signed("server", "/CN=server", "ca", "server");
    await signed("server2", "/CN=server2", "ca", "server");
    await signed("alice", "/CN=alice/OU=lab", "ca", "alice");
    await signed("stranger", "/CN=mallory", "other-ca", "client");
    await request("expired", "/CN=bob");
    await ssl([
      "ca",
      "-batch",
      "-config",
      "openssl.cnf",
      "-notext",
      "-startdate",
      "20200101000000Z",
      "-enddate",
      "20200102000000Z",
      "-in",
      "expired.csr",
      "-out",
      "expired.pem",
    ]);
    await selfSigned("pinned", "/CN=pinned", "pinned");
    await signed("tricky", "/CN=one/CN=two/OU=lab/OU=usb/O=Org, Inc.", "ca", "tricky");
    await Deno.writeTextFile(
      `${dir}/ca-and-pinned.pem`,
      await Deno.readTextFile(`${dir}/ca.pem`) + await Deno.readTextFile(`${dir}/pinned.pem`),
    );
    const files = (name: string): CertFiles => ({
      cert: `${dir}/${name}.pem`,
      key: `${dir}/${name}.key`,
    });
    return {
      dir,
      ca: `${dir}/ca.pem`,
      otherCa: `${dir}/other-ca.pem`,
      server: files("server"),
      server2: files("server2"),
      alice: files("alice"),
      stranger: files("stranger"),
      expired: files("expired"),
      pinned: files("pinned"),
      caAndPinned: `${dir}/ca-and-pinned.pem`,
      tricky: files("tricky"),
      remove,
    };
  } catch (e) {
    await remove();
    throw e;
  }
}

/** The SHA-256 fingerprint openssl gives for a certificate: 64 lowercase hex, no colons. */
export async function opensslFingerprint(dir: string, certFile: string): Promise<string> {
  const out = await openssl(dir, ["x509", "-in", certFile, "-noout", "-fingerprint", "-sha256"]);
  // "sha256 Fingerprint=AB:CD:..."
  return out.trim().replace(/^.*=/, "").replaceAll(":", "").toLowerCase();
}

/** SHA-256 of the certificate's SubjectPublicKeyInfo in DER, as openssl computes it. */
export async function opensslPubkeyPin(dir: string, certFile: string): Promise<string> {
  const pem = await openssl(dir, ["x509", "-in", certFile, "-noout", "-pubkey"]);
  const der = await run(dir, ["pkey", "-pubin", "-outform", "der"], new TextEncoder().encode(pem));
  const hex = await openssl(dir, ["dgst", "-sha256", "-r"], der);
  // "<hex> *stdin"
  return hex.trim().split(/\s+/)[0]!.toLowerCase();
}

/** `serve`'s flags for a TLS listener on `listen` with `pki`'s server certificate and CA. */
export function tlsServeFlags(pki: TestPki, listen = "127.0.0.1:0"): string[] {
  return [
    "--tls",
    listen,
    "--tls-cert",
    pki.server.cert,
    "--tls-key",
    pki.server.key,
    "--tls-ca",
    pki.ca,
  ];
}
