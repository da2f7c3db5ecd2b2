/**
 * The flags of a TLS client, which `attach --tls` and `tunnel` share: the client certificate,
 * its key, and the CAs that verify the server.
 *
 * @module
 */

import type { TlsCredentialFiles } from "../../transport/tls.ts";
import type { Flag, ParsedFlags } from "../command.ts";
import { UsageError } from "../usage_error.ts";

/** `--cert FILE`, `--key FILE`, `--ca FILE`. */
export const TLS_CLIENT_FLAGS: readonly Flag[] = [
  {
    name: "cert",
    value: "FILE",
    help: "TLS: this client's certificate (PEM, then any intermediate CAs)",
    complete: "file",
  },
  {
    name: "key",
    value: "FILE",
    help: "TLS: the certificate's private key (PEM)",
    complete: "file",
  },
  {
    name: "ca",
    value: "FILE",
    help: `TLS: the CAs that verify the server's certificate (PEM); the
certificate must also name the host of -r (or hold its address)`,
    complete: "file",
  },
];

/** The files of {@linkcode TLS_CLIENT_FLAGS}, all three required; `context` names the use. */
export function tlsClientFiles(flags: ParsedFlags, context: string): TlsCredentialFiles {
  const [certFile, keyFile, caFile] = [flags.one("cert"), flags.one("key"), flags.one("ca")];
  const missing = [["--cert", certFile], ["--key", keyFile], ["--ca", caFile]]
    .filter(([, v]) => v === undefined).map(([n]) => n);
  if (missing.length > 0) throw new UsageError(`${context} needs ${missing.join(", ")}`);
  return { certFile: certFile!, keyFile: keyFile!, caFile: caFile! };
}

/** Refuses `--cert`, `--key` and `--ca` where no TLS is spoken. */
export function noTlsClientFlags(flags: ParsedFlags, why: string): void {
  const given = ["cert", "key", "ca"].filter((n) => flags.has(n)).map((n) => `--${n}`);
  if (given.length > 0) throw new UsageError(`${given.join(", ")}: ${why}`);
}
