// Loads golden frames from tests/testdata/*.hex: hex bytes with `#` comments naming each field
// and its offset in the kernel's layout (usbip_protocol.rst, usbip_common.h). `00*N` stands
// for N zero bytes (the NUL padding of fixed-size string fields).

/** Reads `name` from tests/testdata and returns its bytes. */
export function golden(name: string): Uint8Array {
  const text = Deno.readTextFileSync(new URL(`./${name}`, import.meta.url));
  const out: number[] = [];
  for (const raw of text.split("\n")) {
    for (const token of raw.replace(/#.*/, "").trim().split(/\s+/)) {
      if (token === "") continue;
      const run = /^00\*(\d+)$/.exec(token);
      if (run) {
        for (let i = 0; i < Number(run[1]); i++) out.push(0);
        continue;
      }
      if (token.length % 2 !== 0 || /[^0-9a-fA-F]/.test(token)) {
        throw new SyntaxError(`Cannot read golden frame ${name}: bad token "${token}"`);
      }
      for (let i = 0; i < token.length; i += 2) out.push(parseInt(token.slice(i, i + 2), 16));
    }
  }
  return new Uint8Array(out);
}
