// Writes usbipgw.1, the manual page made from main.ts's command table, dated by deno.json's
// version: deno run -A packaging/man/generate.ts  (tests/cli/man_page_test.ts checks that it is
// current; "usbipgw help --man" and "usbipgw install-service" make the same page).
import denoJson from "../../deno.json" with { type: "json" };
import { COMMANDS } from "../../main.ts";
import { manPage } from "../../lib/cli/man_page.ts";

/** The file this script writes. */
export const MAN_PAGE_FILE: URL = new URL("./usbipgw.1", import.meta.url);

/** The page as packaged: main.ts's table at deno.json's version. */
export function packagedManPage(): string {
  return manPage(COMMANDS, { version: denoJson.version });
}

if (import.meta.main) {
  await Deno.writeTextFile(MAN_PAGE_FILE, packagedManPage());
  console.log(`wrote ${MAN_PAGE_FILE.pathname}`);
}
