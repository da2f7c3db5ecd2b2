// Whether capture files can be written with O_DIRECT in the tests' temporary directory.
import { CaptureFile } from "../../lib/capture/capture_file.ts";
import { tempDir } from "../e2e/_gateway.ts";

/** Why direct writes do not happen in a temporary directory here, or undefined: they do. */
export async function directUnavailable(): Promise<string | undefined> {
  const dir = await tempDir();
  try {
    const file = await CaptureFile.open(`${dir.path}/probe`);
    const direct = file.direct;
    file.close();
    return direct ? undefined : `the file system of ${dir.path} refuses O_DIRECT`;
  } finally {
    await dir.remove();
  }
}
